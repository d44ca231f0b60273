"""Random pycrio configuration files, from the schema (issue 17).

Documents pick keys from ``pycrio.config.schema.OPTIONS`` (so a new option
is fuzzed as soon as it is declared) plus unknown ones, and give them values
of the wrong type, extreme integers, odd strings, durations that are
malformed, negative or astronomically long, floats, dates, arrays and tables.
"""

from __future__ import annotations

import datetime
from typing import Any

import tomli_w
from hypothesis import strategies as st

from pycrio.config.schema import DURATION, INT, OPTIONS, PLUGINS, RUNTIMES, STR_LIST

_OPTS = [o for o in OPTIONS if o.type != PLUGINS]

ODD_STRINGS = st.sampled_from(
    ["", " ", "relative/path", "/", "/tmp/\x00nul", "/tmp/\n", "é", "a" * 5000,
     "unix:///x.sock", "-1", "0x10", "true", "${HOME}", "../..", "\x1b[2J"]
)  # fmt: skip
DURATIONS = st.sampled_from(
    ["0", "0s", "1s", "-1s", "1", "s", "1x", "1h1", "1.5.5s", "1e3s", "inf", "nan", "1m30s",
     "9" * 400 + "h", "99999999999999h", "1" * 30 + "ns", "2562047h47m16.854775807s",
     "100000000h", " 1s", "1s ", "1µs", "1h-1m"]
)  # fmt: skip
INTS = st.one_of(
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 65536]),
    st.integers(-(2**63), 2**63 - 1),
)
SCALARS = st.one_of(
    ODD_STRINGS,
    DURATIONS,
    INTS,
    st.booleans(),
    st.sampled_from([1.5, -0.0, float("inf"), float("nan"), 1e300]),
    st.just(datetime.datetime(1979, 5, 27, 7, 32)),
    st.just(datetime.date(2026, 1, 1)),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["a", "driver", "x"]), SCALARS, max_size=2),
)


def _value_for(opt_type: str) -> st.SearchStrategy[Any]:
    """Mostly plausible for the type, sometimes anything at all."""
    plausible = {
        DURATION: DURATIONS,
        INT: INTS,
        STR_LIST: st.lists(ODD_STRINGS, max_size=3),
        RUNTIMES: st.dictionaries(
            st.sampled_from(["runc", "x", "", "a.b", "é"]),
            st.dictionaries(
                st.sampled_from(["driver", "runtime_path", "bogus", "allowed_annotations"]),
                VALUES,
                max_size=3,
            ),
            max_size=2,
        ),
    }.get(opt_type, ODD_STRINGS)
    return st.one_of(plausible, VALUES)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A parsed TOML document: known keys with odd values, maybe unknown keys."""
    doc: dict[str, Any] = {}
    for opt in draw(st.lists(st.sampled_from(_OPTS), min_size=1, max_size=4)):
        value = draw(_value_for(opt.type))
        node = doc
        for part in [p for p in opt.table.split(".") if p]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[opt.key] = value
    if draw(st.sampled_from([False, False, True])):
        table = draw(st.sampled_from(["", "api", "runtime", "image", "nope", "plugins"]))
        key = draw(st.sampled_from(["unknown_key", "Root", "root ", "api", "x.y"]))
        (doc.setdefault(table, {}) if table else doc)[key] = draw(VALUES)
    return doc


def render(doc: dict[str, Any]) -> str:
    """TOML text of ``doc`` (tomli_w escapes NUL and control characters)."""
    return tomli_w.dumps(doc)


GARBAGE = st.sampled_from(
    ["[api", "root = ", "root = '/x'\nroot = '/y'", "= 1", "[[runtime]]\n", "a = \"\\q\"",
     "\x00", "root = \"/x\" # ok\n[api]\nlisten = 1e", "[runtime.runtimes.x]\ndriver = 'runc'\n"
     "[runtime.runtimes.x]\n", "\ufeffroot = '/x'"]
)  # fmt: skip
