"""Devices from the host's nodes, with cgroup rules; all of them when privileged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import devices
from pycrio.errors import InvalidArgument

NULL = os.stat("/dev/null")


def test_cri_device_from_stat() -> None:
    out, rules = devices.cri_devices(
        [api_pb2.Device(host_path="/dev/null", container_path="/dev/xnull", permissions="mr")]
    )
    assert out == [
        {
            "path": "/dev/xnull",
            "type": "c",
            "major": os.major(NULL.st_rdev),
            "minor": os.minor(NULL.st_rdev),
            "fileMode": NULL.st_mode & 0o7777,
            "uid": NULL.st_uid,
            "gid": NULL.st_gid,
        }
    ]
    assert rules == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rm"},
    ]


def test_default_permissions_are_rwm() -> None:
    _, rules = devices.cri_devices([api_pb2.Device(host_path="/dev/zero", container_path="/dev/z")])
    assert rules[0]["access"] == "rwm"


def test_directory_of_devices(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (tmp_path / "sub").mkdir()
    os.mknod(tmp_path / "sub" / "card0", 0o660 | 0o020000, os.makedev(226, 0))
    (tmp_path / "not-a-device").write_text("")
    out, rules = devices.cri_devices(
        [api_pb2.Device(host_path=str(tmp_path), container_path="/dev/dri")]
    )
    assert [d["path"] for d in out] == ["/dev/dri/sub/card0"]
    assert (rules[0]["major"], rules[0]["minor"]) == (226, 0)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (api_pb2.Device(host_path="/dev/nope", container_path="/dev/x"), "/dev/nope does not"),
        (api_pb2.Device(host_path="/etc/hostname", container_path="/dev/x"), "is not a device"),
        (api_pb2.Device(host_path="/dev/null", container_path="dev/x"), "container_path"),
        (api_pb2.Device(host_path="dev/null", container_path="/dev/x"), "not an absolute"),
        (api_pb2.Device(host_path="/dev/null", container_path="/dev/x", permissions="rwx"),
         r"devices\[0\].permissions: 'rwx'"),
    ],
)  # fmt: skip
def test_invalid_devices(device: api_pb2.Device, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        devices.cri_devices([device])


def test_host_devices_skips_pts_and_friends(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    os.mknod(tmp_path / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(tmp_path / "ptmx", 0o666 | 0o020000, os.makedev(5, 2))
    (tmp_path / "pts").mkdir()
    os.mknod(tmp_path / "pts" / "0", 0o620 | 0o020000, os.makedev(136, 0))
    os.mknod(tmp_path / "loop0", 0o660 | 0o060000, os.makedev(7, 0))
    found = {d["path"]: d["type"] for d in devices.host_devices(str(tmp_path))}
    assert found == {"/dev/null": "c", "/dev/loop0": "b"}
