"""Hypothesis strategies for protobuf messages, derived from their descriptors.

Walks a message's descriptor, so a field the CRI gains tomorrow is fuzzed
without touching this file. Values are chosen to be hostile rather than
random: path tricks, NUL and control characters, very long and non-ASCII
strings, integer extremes, enum numbers no version of the proto defines,
repeated and map fields with odd keys. ``hints`` give the drawing code a way to
mix in values that reach deep code (the id of a real pod, a pullable image),
keyed by field name.

A message is drawn *sparse*: each field is set with a low probability, so
``baseline.MergeFrom(drawn)`` keeps a valid request mostly valid and changes
a few of its fields; shrinking unsets fields, so a failure shrinks to the
fields that matter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

#: Strings that have broken parsers, path joins, shells, headers and logs.
ODD_STRINGS: tuple[str, ...] = (
    "",
    " ",
    ".",
    "..",
    "../../../../etc/passwd",
    "/",
    "/etc/shadow",
    "/proc/self/root",
    "a/../../b",
    "./.",
    "-",
    "--help",
    "-rf",
    "\x00",
    "a\x00b",
    "\n",
    "\r\nX-Injected: 1",
    "\t",
    "\x1b[31mred\x1b[0m",
    "\x7f",
    "é",
    "日本語",
    "\u202etxt.exe",
    "\ufeff",
    "😀",
    "%s%s%n",
    "{}",
    "${HOME}",
    "$(id)",
    "`id`",
    "'\"",
    "*",
    "?",
    "[",
    "=",
    ":",
    "a:b:c",
    "@",
    "#",
    "sha256:",
    "sha256:" + "0" * 64,
    "0" * 64,
    "A" * 253,
)
#: Lengths of long strings, built on demand (a 70 kB literal in a strategy's
#: repr makes hypothesis warn and slows it down).
LONG = (4096, 70_000)

INT32 = (-(2**31), -1, 0, 1, 2**31 - 1)
INT64 = (-(2**63), -(2**31) - 1, -1, 0, 1, 2**31, 2**53 + 1, 2**63 - 1)
UINT32 = (0, 1, 2**31, 2**32 - 1)
UINT64 = (0, 1, 2**32, 2**63, 2**64 - 1)

_INTS = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}
_RANGES = {
    **dict.fromkeys(
        (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32),
        (-(2**31), 2**31 - 1),
    ),
    **dict.fromkeys(
        (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64),
        (-(2**63), 2**63 - 1),
    ),
    **dict.fromkeys((FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64), (0, 2**64 - 1)),
}

#: Printable text without surrogates (protobuf strings must be valid UTF-8).
_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),
    max_size=40,
)

Hints = Mapping[str, Sequence[Any]]


def _long_string(n: int) -> str:
    return "x" * n


def odd_strings(extra: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """A hostile string, a random one, or one of ``extra`` mangled or not."""
    parts: list[st.SearchStrategy[str]] = [
        st.sampled_from(ODD_STRINGS),
        _TEXT,
        st.sampled_from(LONG).map(_long_string),
    ]
    if extra:
        base = st.sampled_from(list(extra))
        parts.insert(0, base)
        odd = st.one_of(st.sampled_from(ODD_STRINGS), st.sampled_from(LONG).map(_long_string))
        parts.append(st.tuples(base, odd).map(lambda t: t[0] + t[1]))  # an id + junk
        parts.append(base.map(lambda s: s[: max(1, len(s) // 2)]))  # a prefix
    return st.one_of(*parts)


def _scalar(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any]:
    extra = [h for h in hints.get(field.name, ()) if h is not None]
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return odd_strings([str(h) for h in extra])
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"\x00", b"\xff" * 3]),
            st.sampled_from(LONG).map(lambda n: b"x" * n),
        )
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(
            st.sampled_from(known),
            st.sampled_from([-1, max(known) + 1, 99, 2**31 - 1, -(2**31)]),
        )
    if t in _INTS:
        lo, hi = _RANGES[t]
        ints = [h for h in extra if isinstance(h, int)]
        choices = [st.sampled_from(_INTS[t]), st.integers(lo, hi)]
        if ints:
            choices.insert(0, st.sampled_from(ints))
        return st.one_of(*choices)
    raise AssertionError(f"no strategy for field {field.full_name} of type {t}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _maps(
    field: FieldDescriptor, hints: Hints, depth: int, min_size: int = 0
) -> st.SearchStrategy[dict[Any, Any]]:
    """Values of a map field: odd keys, values of the map's value type."""
    key_f = field.message_type.fields_by_name["key"]
    val_f = field.message_type.fields_by_name["value"]
    if val_f.type == FieldDescriptor.TYPE_MESSAGE:
        vals: st.SearchStrategy[Any] = messages(val_f.message_type, hints, depth)
    else:
        vals = _scalar(val_f, hints)
    return st.dictionaries(_scalar(key_f, hints), vals, min_size=min_size, max_size=3)


#: Whether a field is set: shrinks towards "no", so failures keep few fields.
_MOSTLY_NOT = st.sampled_from([False] * 5 + [True])


@st.composite
def _message_fields(
    draw: Callable[..., Any], descriptor: Descriptor, hints: Hints, depth: int
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in descriptor.fields:
        if not draw(_MOSTLY_NOT):
            continue
        if _is_map(field):
            if depth > 0:
                values[field.name] = draw(_maps(field, hints, depth - 1))
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                continue
            one: st.SearchStrategy[Any] = messages(field.message_type, hints, depth - 1)
        else:
            one = _scalar(field, hints)
        if field.is_repeated:
            values[field.name] = draw(st.lists(one, max_size=3))
        else:
            values[field.name] = draw(one)
    return values


def _build(descriptor: Descriptor, cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(msg, name)
        if _is_map(field):
            val_f = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if val_f.type == FieldDescriptor.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def messages(
    descriptor: Descriptor, hints: Hints | None = None, depth: int = 5
) -> st.SearchStrategy[Message]:
    """A sparse message of ``descriptor``'s type, nested down to ``depth`` levels."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)
    return _message_fields(descriptor, hints or {}, depth).map(
        lambda values: _build(descriptor, cls, values)
    )


def leaf_paths(descriptor: Descriptor, depth: int = 6) -> list[tuple[FieldDescriptor, ...]]:
    """Every path from ``descriptor`` to a scalar, repeated scalar or map field."""
    out: list[tuple[FieldDescriptor, ...]] = []

    def walk(d: Descriptor, prefix: tuple[FieldDescriptor, ...], seen: frozenset[str]) -> None:
        for f in d.fields:
            path = (*prefix, f)
            if _is_map(f) or f.type != FieldDescriptor.TYPE_MESSAGE:
                out.append(path)
            elif len(path) < depth and f.message_type.full_name not in seen:
                walk(f.message_type, path, seen | {f.message_type.full_name})

    walk(descriptor, (), frozenset({descriptor.full_name}))
    return out


def _leaf_value(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any]:
    if _is_map(field):
        return _maps(field, hints, 2, min_size=1)
    if field.is_repeated:
        return st.lists(_scalar(field, hints), min_size=1, max_size=4)
    return _scalar(field, hints)


def _set_leaf(msg: Message, path: tuple[FieldDescriptor, ...], value: Any) -> None:
    cur = msg
    for f in path[:-1]:
        cur = getattr(cur, f.name).add() if f.is_repeated else getattr(cur, f.name)
    leaf = path[-1]
    _build_into(cur, leaf, value)
    if cur is not msg:
        cur.SetInParent()  # a leaf set to its default still sends its parents


def _build_into(msg: Message, field: FieldDescriptor, value: Any) -> None:
    built = _build(msg.DESCRIPTOR, type(msg), {field.name: value})
    msg.MergeFrom(built)


@st.composite
def _mutations(
    draw: Callable[..., Any],
    descriptor: Descriptor,
    paths: Sequence[tuple[FieldDescriptor, ...]],
    hints: Hints,
) -> Message:
    from google.protobuf import message_factory

    msg = message_factory.GetMessageClass(descriptor)()
    # a top-level field first, then a leaf under it: a big sub-message (the
    # pod config inside a PullImageRequest) does not crowd out a small one
    groups: dict[str, list[tuple[FieldDescriptor, ...]]] = {}
    for path in paths:
        groups.setdefault(path[0].name, []).append(path)
    group_list = list(groups.values())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(draw(st.sampled_from(group_list))))
        _set_leaf(msg, path, draw(_leaf_value(path[-1], hints)))
    return msg


def hostile_requests(
    descriptor: Descriptor, hints: Hints | None = None
) -> st.SearchStrategy[Message]:
    """What the fuzzer merges into a valid request: 1-3 leaves set to hostile
    values (every leaf of the request is a candidate, however deep), or a
    sparse random message (several fields at once, nested and repeated)."""
    hints = hints or {}
    paths = leaf_paths(descriptor)
    if not paths:
        return messages(descriptor, hints)
    return st.one_of(_mutations(descriptor, paths, hints), messages(descriptor, hints))
