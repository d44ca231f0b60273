"""RuntimeDefault, Unconfined and Localhost seccomp profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import seccomp
from pycrio.errors import InvalidArgument

BASE_CAPS = ["CAP_CHOWN", "CAP_KILL"]


def names(profile: dict[str, Any], action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for rule in profile["syscalls"] if rule["action"] == action for n in rule["names"]}


def sc_with(kind: int | None = None, ref: str = "", legacy: str = "") -> Any:
    sc = api_pb2.LinuxContainerSecurityContext(seccomp_profile_path=legacy)
    if kind is not None:
        sc.seccomp.profile_type = kind
        sc.seccomp.localhost_ref = ref
    return sc


def test_default_profile_shape_x86_64() -> None:
    p = seccomp.default_profile("x86_64", BASE_CAPS)
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = names(p)
    assert {"read", "write", "execve", "arch_prctl", "modify_ldt"} <= allowed
    # denied without the matching capability
    assert not {"mount", "unshare", "reboot", "kexec_load", "init_module"} & allowed
    assert "cacheflush" not in allowed  # arm only
    assert "clone3" in names(p, "SCMP_ACT_ERRNO")
    clone = [r for r in p["syscalls"] if r["names"] == ["clone"]]
    assert clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"


def test_default_profile_aarch64_and_sys_admin() -> None:
    p = seccomp.default_profile("aarch64", [*BASE_CAPS, "CAP_SYS_ADMIN"])
    assert p["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    allowed = names(p)
    assert {"mount", "unshare", "clone", "cacheflush"} <= allowed
    assert "arch_prctl" not in allowed
    assert "clone3" not in names(p, "SCMP_ACT_ERRNO")  # excluded with CAP_SYS_ADMIN


def test_unknown_machine() -> None:
    with pytest.raises(InvalidArgument, match="riscv"):
        seccomp.default_profile("riscv", BASE_CAPS)


@pytest.mark.parametrize(
    ("sc", "expected"),
    [
        (sc_with(seccomp.RUNTIME_DEFAULT), "default"),
        (sc_with(seccomp.UNCONFINED), None),
        (sc_with(legacy=""), None),  # nothing asked: Unconfined, as Kubernetes means
        (sc_with(legacy="runtime/default"), "default"),
        (sc_with(legacy="docker/default"), "default"),
        (sc_with(legacy="unconfined"), None),
    ],
)
def test_build_selects(sc: Any, expected: str | None) -> None:
    result = seccomp.build(sc, False, "x86_64", BASE_CAPS)
    if expected is None:
        assert result is None
    else:
        assert result is not None and result["defaultAction"] == "SCMP_ACT_ERRNO"


def test_privileged_has_no_filter() -> None:
    assert seccomp.build(sc_with(seccomp.RUNTIME_DEFAULT), True, "x86_64", BASE_CAPS) is None


def test_localhost_profile_in_moby_format(tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"name": "personality", "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    }  # fmt: skip
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    for ref in (str(path), "localhost/" + str(path)):
        result = seccomp.build(sc_with(seccomp.LOCALHOST, ref), False, "x86_64", BASE_CAPS)
        assert result is not None
        assert result["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
        assert names(result) == {"read", "write", "personality"}
    legacy = seccomp.build(sc_with(legacy="localhost/" + str(path)), False, "x86_64", [])
    assert legacy is not None and "read" in names(legacy)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"defaultAction": "SCMP_ACT_NOPE"}', "invalid defaultAction"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": '
         '"SCMP_ACT_ALLOW"}]}', r"syscalls\[0\]: names"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": '
         '"SCMP_ACT_ALLOW", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]}', "index: 9"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": '
         '"SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "EQ"}]}]}', "invalid op"),
    ],
)  # fmt: skip
def test_localhost_profile_invalid(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgument, match=message) as info:
        seccomp.build(sc_with(seccomp.LOCALHOST, str(path)), False, "x86_64", BASE_CAPS)
    assert str(path) in info.value.message


def test_localhost_without_ref_and_relative_path() -> None:
    with pytest.raises(InvalidArgument, match="without localhost_ref"):
        seccomp.build(sc_with(seccomp.LOCALHOST, ""), False, "x86_64", BASE_CAPS)
    with pytest.raises(InvalidArgument, match="must be absolute"):
        seccomp.build(sc_with(seccomp.LOCALHOST, "rel.json"), False, "x86_64", BASE_CAPS)
    with pytest.raises(InvalidArgument, match="seccomp_profile_path: unknown value"):
        seccomp.build(sc_with(legacy="weird"), False, "x86_64", BASE_CAPS)
