"""Namespaces from the pod's pins, the host's, new ones, or a target container's."""

from __future__ import annotations

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import namespaces as ns
from pycrio.errors import InvalidArgument

PINS = {"net": "/run/ns/net", "ipc": "/run/ns/ipc", "uts": "/run/ns/uts", "pid": "/proc/9/ns/pid"}


def opts(**kw: object) -> api_pb2.NamespaceOption:
    return api_pb2.NamespaceOption(**kw)  # type: ignore[arg-type]


def as_map(entries: list[dict[str, str]]) -> dict[str, str]:
    return {e["type"]: e.get("path", "") for e in entries}


HOST_POD_PINS = {"pid": "/proc/9/ns/pid"}


@pytest.mark.parametrize(
    ("options", "pins", "pod_host", "v2", "expected", "host_uts"),
    [
        (opts(pid=ns.CONTAINER), PINS, (), False,
         {"network": "/run/ns/net", "ipc": "/run/ns/ipc", "uts": "/run/ns/uts", "pid": "",
          "mount": ""}, False),
        (opts(pid=ns.POD), PINS, (), True,
         {"network": "/run/ns/net", "ipc": "/run/ns/ipc", "uts": "/run/ns/uts",
          "pid": "/proc/9/ns/pid", "mount": "", "cgroup": ""}, False),
        # the container's NODE does not take it out of its pod's namespaces
        (opts(network=ns.NODE, ipc=ns.NODE, pid=ns.NODE), PINS, (), False,
         {"network": "/run/ns/net", "ipc": "/run/ns/ipc", "uts": "/run/ns/uts", "mount": ""},
         False),
        # a pod on the host's network and IPC: so are its containers, whatever they ask
        (opts(pid=ns.POD), HOST_POD_PINS, ("net", "ipc", "uts"), False,
         {"pid": "/proc/9/ns/pid", "mount": ""}, True),
        (opts(network=ns.NODE, ipc=ns.NODE, pid=ns.NODE), {}, ("net", "ipc", "uts"), False,
         {"mount": ""}, True),
        (opts(pid=ns.CONTAINER), {}, (), False,  # nothing pinned: new namespaces
         {"network": "", "ipc": "", "uts": "", "pid": "", "mount": ""}, False),
    ],
)  # fmt: skip
def test_build(
    options: api_pb2.NamespaceOption,
    pins: dict[str, str],
    pod_host: tuple[str, ...],
    v2: bool,
    expected: dict[str, str],
    host_uts: bool,
) -> None:
    entries, uts = ns.build(options, pins, None, v2, frozenset(pod_host))
    assert as_map(entries) == expected
    assert uts is host_uts


def test_target_pid() -> None:
    entries, _ = ns.build(opts(pid=ns.TARGET, target_id="abc"), PINS, 4242, False)
    assert as_map(entries)["pid"] == "/proc/4242/ns/pid"


@pytest.mark.parametrize(
    ("options", "pins", "target", "message"),
    [
        (opts(pid=ns.TARGET), PINS, 1, "target_id: required"),
        (opts(pid=ns.TARGET, target_id="abc"), PINS, None, "container abc is not running"),
        (opts(network=ns.CONTAINER), PINS, None, "namespace_options.network: mode CONTAINER"),
        (opts(ipc=ns.TARGET), PINS, None, "namespace_options.ipc"),
        # issue 17, CRI fuzzer: an enum number no CRI defines answered INTERNAL
        (opts(network=-1), PINS, None, "namespace_options.network: mode -1 is not supported"),
        (opts(pid=99), PINS, None, "namespace_options.pid: unknown mode 99"),
        (opts(), {"mnt": "/x"}, None, "unknown kinds"),
        (opts(userns_options=api_pb2.UserNamespace(mode=ns.POD)), PINS, None, "user namespaces"),
    ],
)
def test_invalid(
    options: api_pb2.NamespaceOption, pins: dict[str, str], target: int | None, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ns.build(options, pins, target, False)
