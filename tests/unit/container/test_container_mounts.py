"""Default mounts, the pod's files, CRI mounts with propagation, image volumes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from pycrio.container import mounts
from pycrio.errors import InvalidArgument
from pycrio.linux import mountinfo

MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:5 / /shared rw shared:7 - tmpfs tmpfs rw
31 22 0:6 / /slave rw master:7 - tmpfs tmpfs rw
32 22 0:7 / /private rw - tmpfs tmpfs rw
33 22 0:8 / /with\\040space rw shared:9 - tmpfs tmpfs rw
"""


def m(container: str, host: str, **kw: Any) -> api_pb2.Mount:
    return api_pb2.Mount(container_path=container, host_path=host, **kw)


def test_default_mounts() -> None:
    dests = [x["destination"] for x in mounts.default_mounts(False)]
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    by_dest = {x["destination"]: x for x in mounts.default_mounts(False)}
    assert "ro" in by_dest["/sys"]["options"]
    assert "ro" in by_dest["/sys/fs/cgroup"]["options"]
    priv = {x["destination"]: x for x in mounts.default_mounts(True)}
    assert "ro" not in priv["/sys"]["options"]
    assert "rw" in priv["/sys/fs/cgroup"]["options"]


def test_shm_and_pod_files() -> None:
    assert mounts.shm_mount("/run/pod/shm")["source"] == "/run/pod/shm"
    assert mounts.shm_mount("")["type"] == "tmpfs"
    files = mounts.pod_file_mounts("/p/hostname", "", "/p/resolv.conf", readonly=True)
    assert [f["destination"] for f in files] == ["/etc/hostname", "/etc/resolv.conf"]
    assert all("ro" in f["options"] for f in files)


def test_cri_mount_options(tmp_path: Path) -> None:
    out, prop = mounts.cri_mounts(
        [
            m("/data/", str(tmp_path)),
            m("/ro", str(tmp_path), readonly=True, recursive_read_only=True),
        ],
        "",
    )
    assert out[0] == {
        "destination": "/data",
        "type": "bind",
        "source": os.path.realpath(tmp_path),
        "options": ["rbind", "rprivate", "rw"],
    }
    assert out[1]["options"] == ["rbind", "rprivate", "ro", "rro"]
    assert prop == ""


@pytest.mark.parametrize(
    ("host", "propagation", "option", "rootfs_prop"),
    [
        ("/shared/x", mounts.PROPAGATION_BIDIRECTIONAL, "rshared", "rshared"),
        ("/shared", mounts.PROPAGATION_HOST_TO_CONTAINER, "rslave", "rslave"),
        ("/slave/y", mounts.PROPAGATION_HOST_TO_CONTAINER, "rslave", "rslave"),
    ],
)
def test_propagation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, propagation: int, option: str,
    rootfs_prop: str,
) -> None:  # fmt: skip
    # host paths are checked for existence; point realpath at the fake mount table's paths
    monkeypatch.setattr(mounts.os.path, "exists", lambda p: True)
    monkeypatch.setattr(mounts.os.path, "realpath", lambda p: p)
    out, prop = mounts.cri_mounts([m("/c", host, propagation=propagation)], MOUNTINFO)
    assert option in out[0]["options"]
    assert prop == rootfs_prop


@pytest.mark.parametrize(
    ("host", "propagation", "message"),
    [
        ("/private/z", mounts.PROPAGATION_BIDIRECTIONAL, "needs /private/z on a shared mount"),
        ("/slave", mounts.PROPAGATION_BIDIRECTIONAL, "shared mount"),
        ("/private", mounts.PROPAGATION_HOST_TO_CONTAINER, "shared or slave"),
    ],
)
def test_propagation_needs_matching_host_mount(
    monkeypatch: pytest.MonkeyPatch, host: str, propagation: int, message: str
) -> None:
    monkeypatch.setattr(mounts.os.path, "exists", lambda p: True)
    monkeypatch.setattr(mounts.os.path, "realpath", lambda p: p)
    with pytest.raises(InvalidArgument, match=message):
        mounts.cri_mounts([m("/c", host, propagation=propagation)], MOUNTINFO)


def test_rshared_wins_over_rslave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mounts.os.path, "exists", lambda p: True)
    monkeypatch.setattr(mounts.os.path, "realpath", lambda p: p)
    _, prop = mounts.cri_mounts(
        [
            m("/a", "/shared", propagation=mounts.PROPAGATION_BIDIRECTIONAL),
            m("/b", "/slave", propagation=mounts.PROPAGATION_HOST_TO_CONTAINER),
        ],
        MOUNTINFO,
    )
    assert prop == "rshared"


def test_mountinfo_parsing() -> None:
    entries = mountinfo.parse(MOUNTINFO)
    assert entries[4].mount_point == "/with space"
    assert mountinfo.mount_of(entries, "/shared/a/b").mount_point == "/shared"  # type: ignore[union-attr]
    assert mountinfo.mount_of(entries, "/sharedx").mount_point == "/"  # type: ignore[union-attr]
    assert mountinfo.mount_of(entries, "/with space/f").shared  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (m("rel", "/"), r"mounts\[0\].container_path: 'rel' is not an absolute path"),
        (m("", "/"), r"mounts\[0\].container_path"),
        (m("/", "/"), "cannot mount over the container's root"),
        (m("/c", "/definitely/not/here"), r"host_path: /definitely/not/here does not exist"),
        (m("/c", "relative"), "host_path: 'relative' is not an absolute path"),
        (m("/c", "/", recursive_read_only=True), "recursive_read_only requires readonly"),
        (
            m("/c", "/", readonly=True, recursive_read_only=True,
              propagation=mounts.PROPAGATION_HOST_TO_CONTAINER),
            "requires private propagation",
        ),
        (m("/c", "/", propagation=9), "propagation: unknown value 9"),
        (m("/c", "", image=api_pb2.ImageSpec(image="x")), "image volumes are not supported here"),
        (m("/c", "/", uidMappings=[api_pb2.IDMapping(length=1)]), "id-mapped"),
    ],
)  # fmt: skip
def test_invalid_cri_mounts(mount: api_pb2.Mount, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        mounts.cri_mounts([mount], "")


def test_image_volume_is_a_read_only_bind_without_noexec() -> None:
    image = api_pb2.ImageSpec(image="x")
    out, _ = mounts.cri_mounts(
        [m("/tools", "", image=image, readonly=True)], "", image_sources={0: "/img/root"}
    )
    assert out == [
        {"destination": "/tools", "type": "bind", "source": "/img/root",
         "options": ["rbind", "rprivate", "ro", "nosuid", "nodev"]}
    ]  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"mounts\[0\]: an image volume must be read-only"):
        mounts.cri_mounts([m("/tools", "", image=image)], "", image_sources={0: "/img/root"})


def test_duplicate_destination() -> None:
    with pytest.raises(InvalidArgument, match="duplicate mount point /c"):
        mounts.cri_mounts([m("/c", "/"), m("/c/", "/")], "")


def test_merge_replaces_and_orders() -> None:
    base = [*mounts.default_mounts(False), mounts.shm_mount("")]
    extra = [
        {"destination": "/a/b/c", "type": "bind", "source": "/x", "options": []},
        {"destination": "/dev/shm", "type": "bind", "source": "/y", "options": []},
        {"destination": "/a", "type": "bind", "source": "/z", "options": []},
    ]
    merged = mounts.merge(base, extra)
    dests = [x["destination"] for x in merged]
    assert dests.count("/dev/shm") == 1
    assert dests[-3:] == ["/a", "/dev/shm", "/a/b/c"]


def test_image_volumes(tmp_path: Path) -> None:
    dirs = mounts.image_volume_dirs(["/data/", "cache", "/data", "/covered", "/"], ["/covered"])
    assert dirs == ["/data", "/cache"]
    created = mounts.create_image_volumes(str(tmp_path), dirs)
    assert created == [str(tmp_path / "data"), str(tmp_path / "cache")]
    assert (tmp_path / "data").is_dir()
    with pytest.raises(InvalidArgument, match="image volume"):
        mounts.image_volume_dirs([" "], [])
