"""The shim v2 API's protobuf messages, built at import time from proto/*.proto.

``api.task.CreateTaskRequest``, ``api.events.TaskExit``, ``api.cgroups.Metrics``
... are ordinary protobuf message classes living in a private descriptor pool
(so nothing here clashes with another library's registrations). The .proto
files are our transcription of containerd's, with the same names and field
numbers: the wire format is what containerd and every shim speak.

Values inside a ``google.protobuf.Any`` carry a type URL; containerd's
typeurl names protobuf messages by their full name and the OCI runtime-spec
types (JSON-encoded) by ``types.containerd.io/opencontainers/runtime-spec/1/<T>``.
"""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace
from typing import Any

from google.protobuf import (
    any_pb2,
    descriptor_pool,
    empty_pb2,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.internal import enum_type_wrapper

from pycrio.protofile import parse

POOL = descriptor_pool.DescriptorPool()
for _wk in (any_pb2, empty_pb2, timestamp_pb2):
    POOL.AddSerializedFile(_wk.DESCRIPTOR.serialized_pb)

# (file in proto/, the name other files import it by), in dependency order
_FILES = (
    ("types.proto", "containerd/types.proto"),
    ("task_types.proto", "containerd/task_types.proto"),
    ("shim.proto", "containerd/shim.proto"),
    ("events.proto", "containerd/events.proto"),
    ("events_service.proto", "containerd/events_service.proto"),
    ("runtimeoptions.proto", "containerd/runtimeoptions.proto"),
    ("cgroups_v1.proto", "containerd/cgroups_v1.proto"),
    ("cgroups_v2.proto", "containerd/cgroups_v2.proto"),
)


def _load(file: str, name: str) -> SimpleNamespace:
    text = resources.files("pycrio_runtime_kata").joinpath("proto").joinpath(file).read_text()
    desc = POOL.Add(parse(text, name, POOL))
    ns = SimpleNamespace()
    for msg_name, msg in desc.message_types_by_name.items():
        setattr(ns, msg_name, message_factory.GetMessageClass(msg))
    for enum_name, enum in desc.enum_types_by_name.items():
        setattr(ns, enum_name, enum_type_wrapper.EnumTypeWrapper(enum))
    ns.DESCRIPTOR = desc
    return ns


types, task_types, task, events, events_service, runtimeoptions, cgroups, cgroups_v2 = (
    _load(f, n) for f, n in _FILES
)

Any_ = message_factory.GetMessageClass(POOL.FindMessageTypeByName("google.protobuf.Any"))
Empty = message_factory.GetMessageClass(POOL.FindMessageTypeByName("google.protobuf.Empty"))
Timestamp = message_factory.GetMessageClass(POOL.FindMessageTypeByName("google.protobuf.Timestamp"))

TASK_SERVICE = "containerd.task.v2.Task"
EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"

#: rpc name -> (request class, response class) of the Task service
TASK_METHODS: dict[str, tuple[Any, Any]] = {
    m.name: (
        message_factory.GetMessageClass(m.input_type),
        message_factory.GetMessageClass(m.output_type),
    )
    for m in task.DESCRIPTOR.services_by_name["Task"].methods
}

OCI_TYPE_PREFIX = "types.containerd.io/opencontainers/runtime-spec/1/"


def oci_any(kind: str, value: dict[str, Any]) -> Any:
    """An Any holding an OCI runtime-spec object (``Process``, ``LinuxResources``) as JSON,
    the way containerd's typeurl encodes the types it registers for shims."""
    return Any_(type_url=OCI_TYPE_PREFIX + kind, value=json.dumps(value).encode())


def message_any(msg: Any) -> Any:
    """An Any holding a protobuf message, named as containerd's typeurl names it."""
    return Any_(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def type_name(type_url: str) -> str:
    """``containerd.events.TaskExit`` from ``containerd.events.TaskExit`` or
    ``type.googleapis.com/containerd.events.TaskExit``."""
    return type_url.rsplit("/", 1)[-1]


def timestamp_ns(ts: Any) -> int:
    """Nanoseconds since the epoch of a Timestamp (0 when unset or before the epoch)."""
    ns = int(ts.seconds) * 1_000_000_000 + int(ts.nanos)
    return ns if ns > 0 else 0  # Go's zero time is year 1: "never"
