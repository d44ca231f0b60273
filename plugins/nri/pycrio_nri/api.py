"""NRI's protobuf messages, from nri.proto, in a private descriptor pool.

``api.PodSandbox``, ``api.CreateContainerResponse`` ... are ordinary protobuf
message classes; ``api.Event.Value("CREATE_CONTAINER")`` and friends are the
enums. Service names are what ttrpc requests carry.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

from pycrio.protofile import parse

PACKAGE = "nri.pkg.api.v1alpha1"
PLUGIN_SERVICE = f"{PACKAGE}.Plugin"
RUNTIME_SERVICE = f"{PACKAGE}.Runtime"
#: The NRI release whose API this is; reported to plugins in ConfigureRequest.
NRI_VERSION = "v0.12.0"

POOL = descriptor_pool.DescriptorPool()
FILE = POOL.Add(
    parse(
        resources.files("pycrio_nri").joinpath("nri.proto").read_text(),
        "github.com/containerd/nri/pkg/api/api.proto",
    )
)
_messages: dict[str, Any] = {
    name: message_factory.GetMessageClass(desc) for name, desc in FILE.message_types_by_name.items()
}
_enums: dict[str, Any] = {
    name: enum_type_wrapper.EnumTypeWrapper(desc) for name, desc in FILE.enum_types_by_name.items()
}
globals().update(_messages)
globals().update(_enums)

#: rpc name -> (request class, response class) for each service
METHODS: dict[str, dict[str, tuple[Any, Any]]] = {
    svc.full_name: {
        m.name: (
            message_factory.GetMessageClass(m.input_type),
            message_factory.GetMessageClass(m.output_type),
        )
        for m in svc.methods
    }
    for svc in FILE.services_by_name.values()
}


def event_bit(event: int) -> int:
    """The bit of ``event`` in a subscription mask (NRI's EventMask: 1 << (event - 1))."""
    return 1 << (event - 1)


#: Every event a plugin may subscribe to; a plugin subscribing to none gets these.
VALID_EVENTS = (1 << (15 - 1)) - 1
