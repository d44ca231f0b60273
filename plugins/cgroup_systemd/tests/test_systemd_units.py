"""Slice names, runc's slice:prefix:name paths and their cgroup directories (pure)."""

from __future__ import annotations

import pytest
from pycrio_cgroup_systemd.units import (
    cgroup_of,
    check_slice,
    child_slice,
    expand_slice,
    scope_path,
    split_path,
)

from pycrio.errors import InvalidArgument


def test_kubelet_pod_slice_expands_to_its_ancestry() -> None:
    name = "kubepods-burstable-pod1a2b.slice"
    assert check_slice(name) == name
    assert expand_slice(name) == (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice"
    )
    assert expand_slice("system.slice") == "/system.slice"
    assert expand_slice("-.slice") == "/"


@pytest.mark.parametrize("parent", ["/kubepods/burstable/pod1", "/kubepods.slice"])
def test_cgroupfs_parent_says_the_drivers_disagree(parent: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        check_slice(parent)
    assert "cgroupfs path" in e.value.message
    assert "--cgroup-driver" in e.value.message and "cgroup_manager" in e.value.message


@pytest.mark.parametrize(
    "name", ["kubepods", "a--b.slice", "-a.slice", "a-.slice", "a/b.slice", "a b.slice", ""]
)
def test_malformed_slices_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_slice(name)


def test_child_slice() -> None:
    assert child_slice("pycrio.slice", "podabc") == "pycrio-podabc.slice"
    assert child_slice("kubepods-besteffort.slice", "pod1") == "kubepods-besteffort-pod1.slice"
    assert child_slice("-.slice", "x") == "x.slice"


def test_container_scope_paths() -> None:
    path = scope_path("kubepods-pod1.slice", "pycrio", "c0ffee")
    assert path == "kubepods-pod1.slice:pycrio:c0ffee"
    assert split_path(path) == ("kubepods-pod1.slice", "pycrio-c0ffee.scope")
    assert cgroup_of(path) == "/kubepods.slice/kubepods-pod1.slice/pycrio-c0ffee.scope"
    assert split_path("kubepods-pod1.slice") == ("kubepods-pod1.slice", "kubepods-pod1.slice")
    assert cgroup_of("kubepods-pod1.slice") == "/kubepods.slice/kubepods-pod1.slice"
    # runc: a name ending in .slice names a slice, not a scope
    assert split_path("a.slice::a-b.slice") == ("a.slice", "a-b.slice")


@pytest.mark.parametrize(
    "path", ["a.slice:p", "a.slice:p:n:x", "/a/b:p:n", "a.slice:p:../x", "a.slice:p-q:n"]
)
def test_malformed_scope_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument):
        split_path(path)
