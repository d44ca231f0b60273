"""CRI-O's default capabilities, add/drop with ALL, prefixes, unknown names."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import capabilities as caps
from pycrio.errors import InvalidArgument

DEFAULT = {"CAP_" + c for c in caps.DEFAULT_CAPABILITIES}


def compute(
    add: Sequence[str] = (), drop: Sequence[str] = (), privileged: bool = False
) -> dict[str, list[str]]:
    c = api_pb2.Capability(add_capabilities=add, drop_capabilities=drop)
    return caps.compute(c, caps.DEFAULT_CAPABILITIES, privileged, 40)


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], DEFAULT),
        (["NET_ADMIN"], [], DEFAULT | {"CAP_NET_ADMIN"}),
        (["cap_sys_time"], ["KILL"], (DEFAULT | {"CAP_SYS_TIME"}) - {"CAP_KILL"}),
        ([], ["ALL"], set()),
        (["NET_RAW"], ["ALL"], {"CAP_NET_RAW"}),  # drop ALL then add only what is named
        (["ALL"], ["CHOWN"], set(caps.ALL_CAPABILITIES) - {"CAP_CHOWN"}),
        (["SYS_ADMIN"], ["SYS_ADMIN"], DEFAULT),  # drop wins
        (["all"], [], set(caps.ALL_CAPABILITIES)),
    ],
)
def test_add_drop(add: list[str], drop: list[str], expected: set[str]) -> None:
    result = compute(add, drop)
    assert set(result["bounding"]) == expected
    assert result["effective"] == result["bounding"] == result["permitted"]
    assert "inheritable" not in result


def test_results_are_in_bit_order() -> None:
    assert compute(["SYS_ADMIN"])["bounding"][0] == "CAP_CHOWN"


def test_privileged_gets_every_supported_capability() -> None:
    result = compute(privileged=True)
    assert result["bounding"] == list(caps.ALL_CAPABILITIES)
    c = api_pb2.Capability()
    assert len(caps.compute(c, (), True, 37)["bounding"]) == 38  # older kernel


@pytest.mark.parametrize(
    ("add", "drop", "message"),
    [
        (["NET_ADMNI"], [], "add_capabilities: unknown capability 'NET_ADMNI'"),
        ([], ["CAP_FOO"], "drop_capabilities: unknown capability 'CAP_FOO'"),
    ],
)
def test_unknown_capability(add: list[str], drop: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        compute(add, drop)


def test_capability_newer_than_kernel() -> None:
    c = api_pb2.Capability(add_capabilities=["BPF"])
    with pytest.raises(InvalidArgument, match="not supported by this kernel"):
        caps.compute(c, (), False, 37)


def test_ambient_capabilities() -> None:
    c = api_pb2.Capability(add_ambient_capabilities=["NET_BIND_SERVICE"])
    result = caps.compute(c, (), False, 40)
    assert result["ambient"] == result["inheritable"] == ["CAP_NET_BIND_SERVICE"]
    assert "CAP_NET_BIND_SERVICE" in result["permitted"]


def test_cap_eff_parsing() -> None:
    status = "Name:\tx\nCapEff:\t000001fffeffffff\n"
    mask = caps.effective_from_status(status)
    assert not caps.has_capability(mask, caps.CAP_SYS_RESOURCE_BIT)
    assert caps.has_capability(mask, caps.ALL_CAPABILITIES.index("CAP_SYS_ADMIN"))
    assert caps.effective_from_status("Name: x\n") == 0


def test_all_capabilities_are_limited_to_the_daemons_bounding_set() -> None:
    # e.g. a node agent run without CAP_SYS_RESOURCE: runc could not grant it
    available = frozenset(caps.ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    priv = caps.compute(api_pb2.Capability(), caps.DEFAULT_CAPABILITIES, True, 40, available)
    assert "CAP_SYS_RESOURCE" not in priv["bounding"]
    assert len(priv["effective"]) == 40
    add_all = caps.compute(
        api_pb2.Capability(add_capabilities=["ALL"]),
        caps.DEFAULT_CAPABILITIES,
        False,
        40,
        available,
    )
    assert "CAP_SYS_RESOURCE" not in add_all["effective"] and "CAP_BPF" in add_all["effective"]
    status = "CapEff:\t0000000000000000\nCapBnd:\t0000000000000021\n"
    assert caps.bounding_from_status(status) == {"CAP_CHOWN", "CAP_KILL"}
    assert caps.bounding_from_status("Name: x\n") is None
