"""Build a FileDescriptorProto from a .proto file's text, at import time.

Just enough of proto3 for the APIs pycrio speaks over ttrpc (NRI's api.proto,
containerd's shim v2 task API and its events): package, imports, services
with unary rpcs, messages (nested messages and enums), enums, scalar,
message, enum, repeated and map fields. It lets a plugin ship an API as a
readable .proto instead of generated code (which would pin a protoc and
protobuf runtime pair) and keeps the wire format protobuf's own. Anything
else in the file is an error, not silently skipped.

Types from other files (``google.protobuf.Any``, ``containerd.types.Mount``)
resolve against the descriptor pool given to :func:`parse`, into which the
imported files must have been added first; each ``import`` becomes a
dependency of the file, so the pool checks the graph.
"""

from __future__ import annotations

import re

from google.protobuf import descriptor_pb2, descriptor_pool

F = descriptor_pb2.FieldDescriptorProto

SCALARS = {
    "double": F.TYPE_DOUBLE,
    "float": F.TYPE_FLOAT,
    "int64": F.TYPE_INT64,
    "uint64": F.TYPE_UINT64,
    "int32": F.TYPE_INT32,
    "fixed64": F.TYPE_FIXED64,
    "fixed32": F.TYPE_FIXED32,
    "bool": F.TYPE_BOOL,
    "string": F.TYPE_STRING,
    "bytes": F.TYPE_BYTES,
    "uint32": F.TYPE_UINT32,
    "sfixed32": F.TYPE_SFIXED32,
    "sfixed64": F.TYPE_SFIXED64,
    "sint32": F.TYPE_SINT32,
    "sint64": F.TYPE_SINT64,
}

_TOKEN = re.compile(
    r"\s+|//[^\n]*|/\*.*?\*/|([A-Za-z_][\w.]*|\d+|\"[^\"]*\"|[{}()<>;=,\[\]])", re.S
)


class ProtoSyntaxError(ValueError):
    pass


def tokenize(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ProtoSyntaxError(f"unexpected character {text[pos]!r} at offset {pos}")
        if m.group(1):
            out.append(m.group(1))
        pos = m.end()
    return out


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


class _Parser:
    def __init__(
        self,
        tokens: list[str],
        file_name: str,
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self.pool = pool
        self.t = tokens
        self.i = 0
        self.fdp = descriptor_pb2.FileDescriptorProto(name=file_name, syntax="proto3")
        # (field, scope, type name) to resolve once every type is known
        self.refs: list[tuple[descriptor_pb2.FieldDescriptorProto, str, str]] = []
        self.messages: set[str] = set()
        self.enums: set[str] = set()

    def peek(self) -> str:
        return self.t[self.i] if self.i < len(self.t) else ""

    def take(self, expect: str | None = None) -> str:
        if self.i >= len(self.t):
            raise ProtoSyntaxError(f"unexpected end of file, expected {expect or 'more'}")
        tok = self.t[self.i]
        if expect is not None and tok != expect:
            raise ProtoSyntaxError(f"expected {expect!r}, got {tok!r} (token {self.i})")
        self.i += 1
        return tok

    def parse(self) -> descriptor_pb2.FileDescriptorProto:
        while self.i < len(self.t):
            tok = self.take()
            if tok == "syntax":
                self.take("=")
                if self.take() != '"proto3"':
                    raise ProtoSyntaxError("only proto3 is supported")
                self.take(";")
            elif tok == "package":
                self.fdp.package = self.take()
                self.take(";")
            elif tok == "option":
                while self.take() != ";":
                    pass
            elif tok == "import":
                name = self.take()
                if not (name.startswith('"') and name.endswith('"')):
                    raise ProtoSyntaxError(f"import needs a quoted file name, got {name!r}")
                self.fdp.dependency.append(name[1:-1])
                self.take(";")
            elif tok == "service":
                self._service()
            elif tok == "message":
                self._message(self.fdp.message_type.add(), "")
            elif tok == "enum":
                self._enum(self.fdp.enum_type.add(), "")
            else:
                raise ProtoSyntaxError(f"unexpected {tok!r} at top level")
        self._resolve()
        return self.fdp

    def _full(self, scope: str, name: str) -> str:
        return f"{scope}.{name}" if scope else f"{self.fdp.package}.{name}"

    def _service(self) -> None:
        svc = self.fdp.service.add(name=self.take())
        self.take("{")
        while self.peek() != "}":
            self.take("rpc")
            m = svc.method.add(name=self.take())
            self.take("(")
            m.input_type = self.take()
            self.take(")")
            self.take("returns")
            self.take("(")
            m.output_type = self.take()
            self.take(")")
            if self.peek() == "{":
                self.take("{")
                self.take("}")
            else:
                self.take(";")
        self.take("}")

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        enum.name = self.take()
        self.enums.add(self._full(scope, enum.name))
        self.take("{")
        while self.peek() != "}":
            name = self.take()
            self.take("=")
            enum.value.add(name=name, number=int(self.take()))
            self.take(";")
        self.take("}")

    def _message(self, msg: descriptor_pb2.DescriptorProto, scope: str) -> None:
        msg.name = self.take()
        full = self._full(scope, msg.name)
        self.messages.add(full)
        self.take("{")
        while self.peek() != "}":
            tok = self.peek()
            if tok == "message":
                self.take()
                self._message(msg.nested_type.add(), full)
            elif tok == "enum":
                self.take()
                self._enum(msg.enum_type.add(), full)
            elif tok == "map":
                self._map_field(msg, full)
            else:
                self._field(msg, full)
        self.take("}")

    def _field(self, msg: descriptor_pb2.DescriptorProto, scope: str) -> None:
        label = F.LABEL_OPTIONAL
        if self.peek() == "repeated":
            self.take()
            label = F.LABEL_REPEATED
        type_name = self.take()
        name = self.take()
        self.take("=")
        number = int(self.take())
        self.take(";")
        field = msg.field.add(name=name, number=number, label=label)
        self._set_type(field, scope, type_name)

    def _map_field(self, msg: descriptor_pb2.DescriptorProto, scope: str) -> None:
        self.take("map")
        self.take("<")
        key_type = self.take()
        self.take(",")
        value_type = self.take()
        self.take(">")
        name = self.take()
        self.take("=")
        number = int(self.take())
        self.take(";")
        entry = msg.nested_type.add(name=_camel(name) + "Entry")
        entry.options.map_entry = True
        self._set_type(entry.field.add(name="key", number=1, label=F.LABEL_OPTIONAL), "", key_type)
        self._set_type(
            entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL), scope, value_type
        )
        field = msg.field.add(name=name, number=number, label=F.LABEL_REPEATED)
        field.type = F.TYPE_MESSAGE
        field.type_name = f".{scope}.{entry.name}"

    def _set_type(self, field: descriptor_pb2.FieldDescriptorProto, scope: str, name: str) -> None:
        if name in SCALARS:
            field.type = SCALARS[name]
        else:
            self.refs.append((field, scope, name))

    def _kind(self, full: str) -> int | None:
        """TYPE_MESSAGE or TYPE_ENUM when ``full`` names a type here or in the pool."""
        if full in self.messages:
            return F.TYPE_MESSAGE
        if full in self.enums:
            return F.TYPE_ENUM
        if self.pool is not None:
            for finder, kind in (
                (self.pool.FindMessageTypeByName, F.TYPE_MESSAGE),
                (self.pool.FindEnumTypeByName, F.TYPE_ENUM),
            ):
                try:
                    finder(full)
                except KeyError:
                    continue
                return kind
        return None

    def _lookup(self, scope: str, name: str) -> tuple[str, int] | None:
        """Protobuf's scoping: innermost scope first, then outwards, then the bare name."""
        parts = scope.split(".") if scope else self.fdp.package.split(".")
        while True:
            candidate = ".".join([*parts, name]) if parts else name
            kind = self._kind(candidate)
            if kind is not None:
                return candidate, kind
            if not parts:
                return None
            parts.pop()

    def _resolve(self) -> None:
        for field, scope, name in self.refs:
            found = self._lookup(scope, name)
            if found is None:
                raise ProtoSyntaxError(f"unknown type {name!r} (used in {scope or 'file'})")
            field.type = found[1]
            field.type_name = "." + found[0]
        for svc in self.fdp.service:
            for m in svc.method:
                for attr in ("input_type", "output_type"):
                    found = self._lookup("", getattr(m, attr))
                    if found is None or found[1] != F.TYPE_MESSAGE:
                        raise ProtoSyntaxError(
                            f"rpc {m.name}: unknown message {getattr(m, attr)!r}"
                        )
                    setattr(m, attr, "." + found[0])


def parse(
    text: str, file_name: str, pool: descriptor_pool.DescriptorPool | None = None
) -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of the .proto ``text``; raises ProtoSyntaxError.

    Types the file does not define are looked up in ``pool`` (the imported
    files must be in it already).
    """
    return _Parser(tokenize(text), file_name, pool).parse()
