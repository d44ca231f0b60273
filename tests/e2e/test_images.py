"""The ImageService through the daemon's socket: names, image formats, storage, the RPCs.

Images come from a real docker-registry on 127.0.0.1 (pushed with skopeo);
each test starts its own daemon with its own registries.conf and policy.json.
Sources (mirrors, policy, auth, TLS) are in test_image_sources.py; failures
(tampering, hostile layers, stalls, crashes, concurrency) in
test_image_failures.py.
"""

from __future__ import annotations

import io
import json
import os
import platform
import stat
import tarfile
from pathlib import Path

import grpc
import pytest
import registry_env
from cri_api.v1 import api_pb2
from image_e2e import (
    ExtraImages,
    Storage,
    image_chains,
    image_daemon,
    insecure,
    list_images,
    pull,
    pull_error,
    push_layers,
    remove,
    status,
)

pytestmark = pytest.mark.e2e

Images = registry_env.TestImages


def config_id(img: registry_env.PushedImage) -> str:
    assert img.built is not None
    return img.built.config.digest


# --- references -------------------------------------------------------------------------


def test_pull_by_tag_digest_and_tag_plus_digest(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    bb = images.busybox
    assert pull(d, bb.name) == config_id(bb)
    assert pull(d, bb.by_digest) == config_id(bb)
    assert pull(d, f"{bb.name}@{bb.digest}") == config_id(bb)
    (img,) = list_images(d)
    assert img.id == config_id(bb)
    # By tag: the tag and the digest are recorded; by digest (even with a tag): the digest only.
    assert list(img.repo_tags) == [bb.name]
    assert list(img.repo_digests) == [bb.by_digest]
    assert img.size > 0
    assert img.spec.image == img.id

    # The same image pushed as Docker schema 2 has the same config: one image, two names.
    docker = images.docker
    assert docker.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert pull(d, docker.name) == config_id(bb)
    (img,) = list_images(d)
    assert sorted(img.repo_tags) == sorted([bb.name, docker.name])
    assert docker.by_digest in img.repo_digests


def test_short_names_through_search_registries_and_aliases(
    start_daemon, tmp_path: Path, registry, images: Images, mirror_registry
) -> None:
    conf = (
        # The mirror registry comes first and lacks multilayer: the next one is tried.
        f'unqualified-search-registries = ["{mirror_registry.host}", "{registry.host}"]\n'
        f'[aliases]\n"bb" = "{registry.host}/pycrio-test/zstd"\n\n'
        + insecure(registry.host, mirror_registry.host)
    )
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    ml = images.multilayer
    assert pull(d, "pycrio-test/multilayer:v1") == config_id(ml)
    assert list(status(d, "pycrio-test/multilayer:v1").image.repo_tags) == [ml.name]
    # An alias wins over the search list, and gets :latest when no tag is given.
    assert pull(d, "bb") == config_id(images.zstd)
    assert list(status(d, "bb").image.repo_tags) == [images.zstd.name]
    assert status(d, "bb:latest").image.id == config_id(images.zstd)

    err = pull_error(d, "pycrio-test/nothing-here:v1")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "not found in any search registry" in err.details()
    assert registry.host in err.details() and mirror_registry.host in err.details()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("127.0.0.1:5000/UpperCase/repo:v1", "repository name 'uppercase/repo' must be lowercase"),
        ("127.0.0.1:5000/repo:bad tag", "may not contain whitespace"),
        ("127.0.0.1:5000/repo:-tag", "a tag is 1-128 of"),
        ("127.0.0.1:5000/repo@sha256:1234", "invalid digest 'sha256:1234'"),
        ("127.0.0.1:5000//double-slash", "a repository path component is empty"),
        ("http://127.0.0.1:5000/repo:v1", "remove the url scheme"),
        ("a" * 64, "is an image id, not an image name"),
        ("", "empty"),
    ],
)
def test_invalid_reference_is_invalid_argument(
    start_daemon, tmp_path: Path, name: str, expected: str
) -> None:
    d = image_daemon(start_daemon, tmp_path)
    err = pull_error(d, name)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert expected in err.details().lower()


def test_unknown_repository_or_tag_is_not_found_naming_the_registry(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    for name, code in (
        (f"{registry.host}/pycrio-test/no-such-repo:v1", "MANIFEST_UNKNOWN"),
        (f"{registry.host}/pycrio-test/busybox:no-such-tag", "MANIFEST_UNKNOWN"),
        (f"{images.busybox.registry}/{images.busybox.repo}@sha256:{'0' * 64}", "MANIFEST_UNKNOWN"),
    ):
        err = pull_error(d, name)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
        assert registry.host in err.details()
        assert code in err.details()
    assert list_images(d) == []


def test_unreachable_registry_is_unavailable(start_daemon, tmp_path: Path) -> None:
    host = f"127.0.0.1:{registry_env.closed_port()}"
    d = image_daemon(start_daemon, tmp_path, registries=insecure(host))
    err = pull_error(d, f"{host}/some/image:v1")
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert f"cannot reach registry {host}" in err.details()


# --- image formats and layers ------------------------------------------------------------


def test_multilayer_image_with_uid_user(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    ml = images.multilayer
    assert ml.built is not None and len(ml.built.layers) == 3
    pull(d, ml.name)
    img = status(d, ml.name).image
    assert img.uid.value == 1000 and img.HasField("uid")
    assert img.username == ""
    store = Storage(tmp_path)
    chains = image_chains(ml.built)
    assert store.layer_names() == {c.split(":")[1] for c in chains}
    # overlay: each diff holds that layer's changes only.
    assert (store.diff(chains[0]) / "bin" / "busybox").stat().st_mode & 0o111
    assert not (store.diff(chains[1]) / "bin").exists()
    assert (store.diff(chains[1]) / "etc/pycrio-test/layer").read_bytes() == b"layer 2\n"
    assert (store.diff(chains[2]) / "etc/pycrio-test/layer").read_bytes() == b"layer 3\n"
    # symlinks and modes are kept
    assert os.readlink(store.diff(chains[0]) / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((store.diff(chains[0]) / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((store.diff(chains[0]) / "root").stat().st_mode) == 0o700


def test_user_name_in_config_is_username(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    pull(d, extra_images.nobody.name)
    img = status(d, extra_images.nobody.name).image
    assert img.username == "nobody"
    assert not img.HasField("uid")


def test_overlay_whiteouts_become_overlayfs_whiteouts(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    wh = extra_images.whiteout
    assert wh.built is not None
    pull(d, wh.name)
    store = Storage(tmp_path)
    chains = image_chains(wh.built)
    lower, top = store.diff(chains[1]), store.diff(chains[2])
    assert (lower / "etc/pycrio-test/gone").read_bytes() == b"deleted by the next layer\n"
    whiteout = os.lstat(top / "etc/pycrio-test/gone")
    assert stat.S_ISCHR(whiteout.st_mode)
    assert os.major(whiteout.st_rdev) == 0 and os.minor(whiteout.st_rdev) == 0
    assert not (top / "etc/pycrio-test/.wh.gone").exists()
    assert os.getxattr(top / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (top / "opaque/.wh..wh..opq").exists()
    assert sorted(os.listdir(top / "opaque")) == ["new"]
    assert not (top / "etc/pycrio-test/kept").exists()  # unchanged files stay below


def test_vfs_layers_are_full_copies_and_whiteouts_delete(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    d = image_daemon(
        start_daemon, tmp_path, registries=insecure(registry.host), top='storage_driver = "vfs"'
    )
    wh = extra_images.whiteout
    assert wh.built is not None
    pull(d, wh.name)
    store = Storage(tmp_path, driver="vfs")
    assert not Storage(tmp_path).layers.exists() or Storage(tmp_path).layer_names() == set()
    chains = image_chains(wh.built)
    assert store.layer_names() == {c.split(":")[1] for c in chains}
    middle, top = store.diff(chains[1]), store.diff(chains[2])
    # Each layer is the whole filesystem so far.
    assert (middle / "bin/busybox").read_bytes() == Path(registry_env.BUSYBOX).read_bytes()
    assert (top / "bin/busybox").is_file()
    assert os.readlink(top / "bin/sh") == "busybox"
    assert (middle / "etc/pycrio-test/gone").is_file()
    assert not os.path.lexists(top / "etc/pycrio-test/gone")
    assert not os.path.lexists(top / "etc/pycrio-test/.wh.gone")
    assert (top / "etc/pycrio-test/kept").read_bytes() == b"kept\n"
    assert sorted(os.listdir(top / "opaque")) == ["new"]
    assert sorted(os.listdir(middle / "opaque")) == ["old", "sub"]
    assert "trusted.overlay.opaque" not in os.listxattr(top / "opaque")


def test_manifest_list_picks_this_node_platform(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"the test index has amd64 and arm64 only, not {platform.machine()}")
    arch = "amd64" if platform.machine() == "x86_64" else "arm64"
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    ma = images.multiarch
    assert ma.media_type == registry_env.MT_OCI_INDEX
    (chosen,) = [b for b in ma.index_of if b.architecture == arch]
    (other,) = [b for b in ma.index_of if b.architecture != arch]
    assert chosen.config.digest != other.config.digest
    assert pull(d, ma.name) == chosen.config.digest
    img = status(d, ma.name).image
    # Both the index digest and the chosen instance's digest name the image.
    assert sorted(img.repo_digests) == sorted(
        [ma.by_digest, f"{ma.registry}/{ma.repo}@{chosen.manifest.digest}"]
    )
    verbose = json.loads(status(d, ma.name, verbose=True).info["info"])
    assert verbose["imageSpec"]["architecture"] == arch
    assert verbose["manifestDigest"] == chosen.manifest.digest


def test_zstd_layer(start_daemon, tmp_path: Path, registry, images: Images) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    z = images.zstd
    assert z.built is not None
    assert z.built.layers[0].media_type == registry_env.MT_OCI_LAYER_ZSTD
    assert pull(d, z.name) == config_id(z)
    (chain,) = image_chains(z.built)
    diff = Storage(tmp_path).diff(chain)
    assert (diff / "bin/busybox").read_bytes() == Path(registry_env.BUSYBOX).read_bytes()
    assert (diff / "etc/passwd").read_text() == registry_env.PASSWD


# --- retagging -----------------------------------------------------------------------------


def test_pulling_a_moved_tag_retags(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    repo = "pycrio-test/retag"

    def layer(text: str) -> registry_env.Blob:
        return registry_env.compress_layer(registry_env.make_tar({"version": text.encode()}))

    v1 = push_tags(extra_images, registry, repo, layer("one\n"), ("a", "b"))
    v1_id = pull(d, f"{registry.host}/{repo}:a")
    assert pull(d, f"{registry.host}/{repo}:b") == v1_id
    assert sorted(status(d, v1_id).image.repo_tags) == [
        f"{registry.host}/{repo}:a",
        f"{registry.host}/{repo}:b",
    ]
    # Tag a moves to new content: the old image keeps its other tag.
    v2 = push_tags(extra_images, registry, repo, layer("two\n"), ("a",))
    v2_id = pull(d, f"{registry.host}/{repo}:a")
    assert v2_id != v1_id
    assert list(status(d, v2_id).image.repo_tags) == [f"{registry.host}/{repo}:a"]
    assert list(status(d, v1_id).image.repo_tags) == [f"{registry.host}/{repo}:b"]
    assert status(d, f"{registry.host}/{repo}:a").image.id == v2_id
    # Tag b moves too: the old image is dangling, still listed by its digest.
    push_tags(extra_images, registry, repo, layer("two\n"), ("b",))
    assert pull(d, f"{registry.host}/{repo}:b") == v2_id
    old = status(d, v1_id).image
    assert list(old.repo_tags) == []
    assert list(old.repo_digests) == [f"{registry.host}/{repo}@{v1[0].digest}"]
    assert {i.id for i in list_images(d)} == {v1_id, v2_id}
    assert sorted(status(d, v2_id).image.repo_tags) == [
        f"{registry.host}/{repo}:a",
        f"{registry.host}/{repo}:b",
    ]
    assert v2[0].digest in " ".join(status(d, v2_id).image.repo_digests)


def push_tags(
    extra: ExtraImages,
    registry: registry_env.RegistryServer,
    repo: str,
    layer: registry_env.Blob,
    tags: tuple[str, ...],
) -> list[registry_env.PushedImage]:
    """Push one image (of ``layer``) under each of ``tags``."""
    return [push_layers(extra, registry, repo, tag, [layer]) for tag in tags]


# --- ImageStatus, ListImages, pinned ---------------------------------------------------------


def test_image_status_by_name_id_prefix_and_digest(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    pinned = f"{registry.host}/pycrio-test/multi*"
    d = image_daemon(
        start_daemon,
        tmp_path,
        registries=insecure(registry.host),
        image=f"pinned_images = [{json.dumps(pinned)}]",
    )
    ml, bb = images.multilayer, images.busybox
    image_id = pull(d, ml.name)
    pull(d, bb.name)
    hex_ = image_id.split(":")[1]
    for name in (ml.name, image_id, hex_, hex_[:12], ml.by_digest):
        img = status(d, name).image
        assert img.id == image_id, name
        assert list(img.repo_tags) == [ml.name]
        assert list(img.repo_digests) == [ml.by_digest]
    assert status(d, ml.name).image.pinned
    assert not status(d, bb.name).image.pinned

    verbose = status(d, ml.name, verbose=True)
    assert verbose.image.id == image_id
    info = json.loads(verbose.info["info"])
    assert info["imageSpec"]["config"]["User"] == "1000:1000"
    assert info["imageSpec"]["config"]["Entrypoint"] == ["/bin/cat"]
    assert info["imageSpec"]["rootfs"]["diff_ids"] == [x.diff_id for x in ml.built.layers]
    assert not status(d, ml.name).info  # only verbose carries info

    # Absent images: an empty response, no error (the kubelet then pulls).
    for absent in (
        f"{registry.host}/pycrio-test/absent:v1",
        "sha256:" + "f" * 64,
        f"{registry.host}/pycrio-test/busybox@sha256:{'e' * 64}",
    ):
        resp = status(d, absent)
        assert not resp.HasField("image"), absent
        assert not resp.info

    # ListImages: all, or filtered by any reference.
    assert {i.id for i in list_images(d)} == {image_id, config_id(bb)}
    assert [i.id for i in list_images(d, ml.name)] == [image_id]
    assert [i.id for i in list_images(d, bb.by_digest)] == [config_id(bb)]
    assert list_images(d, f"{registry.host}/pycrio-test/absent:v1") == []
    assert [i.pinned for i in list_images(d, ml.name)] == [True]


# --- RemoveImage -------------------------------------------------------------------------


def test_remove_image_by_tag_id_and_absent(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    bb, docker, ml = images.busybox, images.docker, images.multilayer
    assert ml.built is not None and bb.built is not None
    store = Storage(tmp_path)
    bb_id = pull(d, bb.name)
    pull(d, docker.name)  # same image, second tag
    ml_id = pull(d, ml.name)
    ml_chains = image_chains(ml.built)
    (base,) = image_chains(bb.built)
    assert base == ml_chains[0]  # the busybox layer is shared
    assert store.layer_names() == {c.split(":")[1] for c in ml_chains}

    # By one tag of two: the other remains, nothing is freed.
    remove(d, docker.name)
    assert list(status(d, bb_id).image.repo_tags) == [bb.name]
    assert not status(d, docker.name).HasField("image")

    # By id: the image goes, its own layers go, the shared base layer stays.
    remove(d, ml_id)
    assert not status(d, ml_id).HasField("image")
    assert store.layer_names() == {base.split(":")[1]}
    assert (store.diff(base) / "bin/busybox").is_file()

    # By its last tag: gone, with its layer; the store is empty.
    remove(d, bb.name)
    assert list_images(d) == []
    assert store.layer_names() == set()
    assert store.tmp_entries() == []

    # Absent images: OK, as the kubelet expects.
    remove(d, bb.name)
    remove(d, "sha256:" + "a" * 64)
    remove(d, f"{registry.host}/pycrio-test/never:v1")

    # A pull after removal fetches again and works.
    assert pull(d, bb.name) == bb_id
    assert (store.diff(base) / "bin/busybox").is_file()


def test_remove_image_by_digest_removes_the_image(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    zid = pull(d, images.zstd.name)
    remove(d, images.zstd.by_digest)
    assert not status(d, zid).HasField("image")
    assert Storage(tmp_path).layer_names() == set()


# --- ImageFsInfo and restart -------------------------------------------------------------


def test_image_fs_info_reports_storage_usage(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))

    def usage() -> api_pb2.FilesystemUsage:
        resp = d.images().ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=10)
        (fs,) = resp.image_filesystems
        assert len(resp.container_filesystems) == 1
        assert fs.fs_id.mountpoint == str(tmp_path / "root" / "storage")
        assert fs.timestamp > 0
        return fs

    before = usage()
    pull(d, images.multilayer.name)
    after = usage()
    busybox_size = os.path.getsize(registry_env.BUSYBOX)
    assert after.used_bytes.value >= busybox_size > before.used_bytes.value
    assert after.inodes_used.value > before.inodes_used.value
    assert after.inodes_used.value >= len(registry_env.BUSYBOX_APPLETS)


def test_images_survive_a_restart(start_daemon, tmp_path: Path, registry, images: Images) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    ml_id = pull(d, images.multilayer.name)
    bb_id = pull(d, images.busybox.name)
    before = {i.id: (list(i.repo_tags), list(i.repo_digests), i.size) for i in list_images(d)}
    layers_before = Storage(tmp_path).layer_names()
    d.stop()
    assert d.proc is not None and d.proc.returncode == 0

    d2 = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    after = {i.id: (list(i.repo_tags), list(i.repo_digests), i.size) for i in list_images(d2)}
    assert after == before
    assert set(after) == {ml_id, bb_id}
    assert status(d2, images.multilayer.name).image.uid.value == 1000
    assert Storage(tmp_path).layer_names() == layers_before
    # The restarted daemon can remove what the first one pulled.
    remove(d2, ml_id)
    assert [i.id for i in list_images(d2)] == [bb_id]


def attribute_layer() -> registry_env.Blob:
    """A layer exercising what must survive unpacking: owners, modes, links, nodes, xattrs."""

    def entry(name: str, kind: bytes, mode: int, **attrs: object) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = kind, mode, 1_600_000_000
        for key, value in attrs.items():
            setattr(ti, key, value)
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry("app", tarfile.DIRTYPE, 0o750, uid=1000, gid=1000))
        body = b"#!/bin/sh\necho tool\n"
        tar.addfile(entry("app/tool", tarfile.REGTYPE, 0o4755, size=len(body)), io.BytesIO(body))
        owned = entry(
            "app/owned", tarfile.REGTYPE, 0o640, uid=1000, gid=1000, size=3,
            pax_headers={"SCHILY.xattr.user.pycrio": "yes"},
        )  # fmt: skip
        tar.addfile(owned, io.BytesIO(b"hi\n"))
        tar.addfile(entry("app/tool-link", tarfile.LNKTYPE, 0o755, linkname="app/tool"))
        tar.addfile(entry("app/sl", tarfile.SYMTYPE, 0o777, linkname="../etc/passwd"))
        tar.addfile(entry("app/pipe", tarfile.FIFOTYPE, 0o620))
        tar.addfile(entry("dev", tarfile.DIRTYPE, 0o755))
        tar.addfile(entry("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3))
        forged = entry(
            "forged", tarfile.DIRTYPE, 0o755,
            pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"},
        )  # fmt: skip
        tar.addfile(forged)
    return registry_env.compress_layer(buf.getvalue())


def test_unpacking_keeps_owners_modes_links_nodes_and_xattrs(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    layer = attribute_layer()
    img = push_layers(extra_images, registry, "pycrio-test/attributes", "v1", [layer])
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    pull(d, img.name)
    (chain,) = image_chains(img.built)
    diff = Storage(tmp_path).diff(chain)

    app = os.lstat(diff / "app")
    assert (app.st_uid, app.st_gid, stat.S_IMODE(app.st_mode)) == (1000, 1000, 0o750)
    tool = os.lstat(diff / "app/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755 and tool.st_uid == 0  # setuid survives
    assert tool.st_mtime == 1_600_000_000
    link = os.lstat(diff / "app/tool-link")
    assert (link.st_ino, link.st_nlink) == (tool.st_ino, 2)
    owned = os.lstat(diff / "app/owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1000, 1000, 0o640)
    assert os.getxattr(diff / "app/owned", "user.pycrio") == b"yes"
    assert os.readlink(diff / "app/sl") == "../etc/passwd"
    assert stat.S_ISFIFO(os.lstat(diff / "app/pipe").st_mode)
    null = os.lstat(diff / "dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    # A layer cannot forge overlayfs metadata.
    assert "trusted.overlay.opaque" not in os.listxattr(diff / "forged")


def test_docker_io_names_normalize_and_follow_registries_conf(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    # docker.io cannot be reached from here: registries.conf sends it to the test registry.
    push_layers(extra_images, registry, "library/busybox", "latest", [extra_images.base])
    conf = (
        'unqualified-search-registries = ["docker.io"]\n'
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    image_id = pull(d, "busybox")
    for name in ("busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox"):
        assert status(d, name).image.id == image_id, name
    assert list(status(d, image_id).image.repo_tags) == ["docker.io/library/busybox:latest"]
    assert status(d, image_id).image.repo_digests[0].startswith("docker.io/library/busybox@")
    assert pull(d, "index.docker.io/library/busybox:latest") == image_id
    assert pull(d, "docker.io/busybox") == image_id


def test_short_name_without_search_registries_is_invalid_argument(
    start_daemon, tmp_path: Path
) -> None:
    d = image_daemon(start_daemon, tmp_path)
    err = pull_error(d, "busybox")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no unqualified-search-registries" in err.details()
    assert str(tmp_path / "registries.conf") in err.details()


def test_remove_image_by_short_name_untags_only_that_name(
    start_daemon, tmp_path: Path, registry, images: Images
) -> None:
    conf = f'unqualified-search-registries = ["{registry.host}"]\n' + insecure(registry.host)
    d = image_daemon(start_daemon, tmp_path, registries=conf)
    bb_id = pull(d, "pycrio-test/busybox")
    assert pull(d, "pycrio-test/docker-busybox:latest") == bb_id
    remove(d, "pycrio-test/busybox")  # the short name of one of its two tags
    assert list(status(d, bb_id).image.repo_tags) == [images.docker.name]
    assert not status(d, "pycrio-test/busybox").HasField("image")
