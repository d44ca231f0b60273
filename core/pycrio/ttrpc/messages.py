"""ttrpc's envelopes, built at import time from descriptors in a private pool.

Field names and numbers are those of containerd/ttrpc's request.proto
(package ``ttrpc``) and of google.rpc.Status (``Status``, no package, as
ttrpc's proto/status.proto declares it). A private pool keeps these out of
protobuf's default pool, where another library may register google.rpc.Status.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
POOL = descriptor_pool.DescriptorPool()


def _field(msg, name: str, number: int, kind: int, repeated: bool = False, type_name: str = ""):
    f = msg.field.add(
        name=name,
        number=number,
        type=kind,
        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )
    if type_name:
        f.type_name = type_name


def _files() -> list[descriptor_pb2.FileDescriptorProto]:
    any_file = descriptor_pb2.FileDescriptorProto(
        name="pycrio/ttrpc/any.proto", package="google.protobuf", syntax="proto3"
    )
    any_msg = any_file.message_type.add(name="Any")
    _field(any_msg, "type_url", 1, _F.TYPE_STRING)
    _field(any_msg, "value", 2, _F.TYPE_BYTES)

    status_file = descriptor_pb2.FileDescriptorProto(
        name="pycrio/ttrpc/status.proto", syntax="proto3", dependency=[any_file.name]
    )
    status = status_file.message_type.add(name="Status")
    _field(status, "code", 1, _F.TYPE_INT32)
    _field(status, "message", 2, _F.TYPE_STRING)
    _field(status, "details", 3, _F.TYPE_MESSAGE, True, ".google.protobuf.Any")

    request_file = descriptor_pb2.FileDescriptorProto(
        name="pycrio/ttrpc/request.proto",
        package="ttrpc",
        syntax="proto3",
        dependency=[status_file.name],
    )
    request = request_file.message_type.add(name="Request")
    _field(request, "service", 1, _F.TYPE_STRING)
    _field(request, "method", 2, _F.TYPE_STRING)
    _field(request, "payload", 3, _F.TYPE_BYTES)
    _field(request, "timeout_nano", 4, _F.TYPE_INT64)
    _field(request, "metadata", 5, _F.TYPE_MESSAGE, True, ".ttrpc.KeyValue")
    response = request_file.message_type.add(name="Response")
    _field(response, "status", 1, _F.TYPE_MESSAGE, type_name=".Status")
    _field(response, "payload", 2, _F.TYPE_BYTES)
    string_list = request_file.message_type.add(name="StringList")
    _field(string_list, "list", 1, _F.TYPE_STRING, True)
    key_value = request_file.message_type.add(name="KeyValue")
    _field(key_value, "key", 1, _F.TYPE_STRING)
    _field(key_value, "value", 2, _F.TYPE_STRING)
    return [any_file, status_file, request_file]


for _fdp in _files():
    POOL.Add(_fdp)


def _cls(full_name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


Request = _cls("ttrpc.Request")
Response = _cls("ttrpc.Response")
KeyValue = _cls("ttrpc.KeyValue")
Status = _cls("Status")
