"""AppArmor only where the host has it, and only loaded profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import apparmor
from pycrio.errors import InvalidArgument

LOADED = frozenset({apparmor.DEFAULT_PROFILE, "my-profile"})


def sc(
    kind: int | None = None, ref: str = "", legacy: str = ""
) -> api_pb2.LinuxContainerSecurityContext:
    ctx = api_pb2.LinuxContainerSecurityContext(apparmor_profile=legacy)
    if kind is not None:
        ctx.apparmor.profile_type = kind
        ctx.apparmor.localhost_ref = ref
    return ctx


@pytest.mark.parametrize(
    ("ctx", "privileged", "enabled", "loaded", "expected"),
    [
        (sc(apparmor.RUNTIME_DEFAULT), False, True, LOADED, "pycrio-default"),
        (sc(apparmor.RUNTIME_DEFAULT), False, False, LOADED, ""),  # host without AppArmor
        (sc(apparmor.RUNTIME_DEFAULT), False, True, frozenset(), ""),  # default not loaded
        (sc(apparmor.RUNTIME_DEFAULT), True, True, LOADED, ""),  # privileged
        (sc(apparmor.UNCONFINED), False, True, LOADED, ""),
        (sc(apparmor.LOCALHOST, "localhost/my-profile"), False, True, LOADED, "my-profile"),
        (sc(legacy="localhost/my-profile"), False, True, LOADED, "my-profile"),
        (sc(legacy=""), False, True, LOADED, "pycrio-default"),
    ],
)
def test_profile_for(
    ctx: api_pb2.LinuxContainerSecurityContext,
    privileged: bool,
    enabled: bool,
    loaded: frozenset[str],
    expected: str,
) -> None:
    assert apparmor.profile_for(ctx, privileged, enabled, loaded) == expected


def test_localhost_profile_not_loaded() -> None:
    with pytest.raises(InvalidArgument, match="'other' is not loaded"):
        apparmor.profile_for(sc(apparmor.LOCALHOST, "other"), False, True, LOADED)


def test_host_detection(tmp_path: Path) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text("Y\n")
    assert apparmor.host_enabled(str(enabled))
    enabled.write_text("N\n")
    assert not apparmor.host_enabled(str(enabled))
    assert not apparmor.host_enabled(str(tmp_path / "missing"))
    profiles = tmp_path / "profiles"
    profiles.write_text("pycrio-default (enforce)\n/usr/bin/man (complain)\n")
    assert apparmor.loaded_profiles(str(profiles)) == {"pycrio-default", "/usr/bin/man"}
