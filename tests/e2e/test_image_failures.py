"""Pulls that go wrong, through the daemon's socket, and what they leave behind.

A tampered blob, hostile layers, a stalled registry, a killed daemon, a client
that gives up, and many clients at once: each must leave the store as if the
failed pull never happened, and concurrent pulls must download once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    status,
    wait_for,
)

pytestmark = pytest.mark.e2e


def unique_layer(label: str, size: int = 64 * 1024) -> registry_env.Blob:
    """A gzip layer no other image has (random content, so gzip cannot shrink it)."""
    return registry_env.compress_layer(
        registry_env.make_tar({f"{label}/data": os.urandom(size)}, dirs=[label])
    )


def assert_store_empty(tmp: Path) -> None:
    store = Storage(tmp)
    assert store.layer_names() == set()
    assert store.tmp_entries() == []


# --- tampered blobs ---------------------------------------------------------------------------


def test_tampered_blob_fails_the_pull_and_stores_nothing(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    layer = unique_layer("tampered")
    img = push_layers(extra_images, registry, "pycrio-test/tampered", "v1", [layer])
    data = registry.blob_path(layer.digest)
    original = data.read_bytes()
    assert original == layer.data
    # Same size, one byte flipped in the middle: only the digest can tell.
    middle = len(original) // 2
    data.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])

    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    err = pull_error(d, img.name)
    assert err.code() == grpc.StatusCode.DATA_LOSS, err.details()
    assert layer.digest in err.details()
    assert "digest mismatch" in err.details()
    assert list_images(d) == []
    assert not status(d, img.name).HasField("image")
    assert_store_empty(tmp_path)

    # Repaired in the registry, the same daemon pulls it fine.
    data.write_bytes(original)
    assert pull(d, img.name) == img.built.config.digest


def test_tampered_manifest_by_digest_is_refused(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    layer = unique_layer("tampered-manifest", 1024)
    img = push_layers(extra_images, registry, "pycrio-test/tampered-manifest", "v1", [layer])
    data = registry.blob_path(img.digest)
    original = data.read_bytes()
    assert hashlib.sha256(original).hexdigest() == img.digest.split(":")[1]
    data.write_bytes(original.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    try:
        d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
        err = pull_error(d, img.by_digest)
        assert err.code() == grpc.StatusCode.DATA_LOSS, err.details()
        assert img.digest in err.details() and "digest mismatch" in err.details()
        assert list_images(d) == []
        assert_store_empty(tmp_path)
    finally:
        data.write_bytes(original)


# --- hostile layers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        pytest.param(
            [("file", "../escaped-{u}", b"out of the layer")],
            "escapes the layer root",
            id="dotdot-file",
        ),
        pytest.param(
            [("dir", "sub", ""), ("file", "sub/../../escaped-{u}", b"out of the layer")],
            "escapes the layer root",
            id="nested-dotdot",
        ),
        pytest.param(
            [("file", "/tmp/escaped-{u}", b"absolute")],
            "absolute path",
            id="absolute-name",
        ),
        pytest.param(
            [("hardlink", "shadow-{u}", "/etc/shadow")],
            "hard link to absolute path",
            id="hardlink-absolute",
        ),
        pytest.param(
            [("hardlink", "shadow-{u}", "../../../../../../../../etc/shadow")],
            "escapes the layer root",
            id="hardlink-dotdot",
        ),
    ],
)
def test_escaping_layer_is_rejected_and_writes_nothing_outside(
    start_daemon,
    tmp_path: Path,
    registry,
    extra_images: ExtraImages,
    entries: list[tuple[str, str, bytes | str]],
    message: str,
) -> None:
    u = uuid.uuid4().hex[:12]
    tar = registry_env.make_tar_entries(
        [("file", "ok", b"fine\n")] + [(k, n.format(u=u), p) for k, n, p in entries]
    )
    layer = registry_env.compress_layer(tar)
    repo = f"pycrio-test/hostile-{u}"
    img = push_layers(extra_images, registry, repo, "v1", [extra_images.base, layer])
    shadow_links = os.stat("/etc/shadow").st_nlink if os.path.exists("/etc/shadow") else None

    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    err = pull_error(d, img.name)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert message in err.details()
    assert list_images(d) == []
    store = Storage(tmp_path)
    chains = image_chains(img.built)
    assert chains[1].split(":")[1] not in store.layer_names()
    assert store.tmp_entries() == []
    # Nowhere: not next to the layer, not in the storage, not at the host's root.
    assert not [p for p in tmp_path.rglob(f"*{u}*")]
    assert not any(Path(p, f"escaped-{u}").exists() for p in ("/", "/tmp", tmp_path.parent))
    if shadow_links is not None:
        assert os.stat("/etc/shadow").st_nlink == shadow_links


def test_symlink_escapes_stay_inside_the_layer(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    """Symlinks resolve as if the layer were the root (chroot semantics, as in CRI-O)."""
    u = uuid.uuid4().hex[:12]
    outside = tmp_path / f"outside-{u}"
    outside.mkdir()
    tar = registry_env.make_tar_entries(
        [
            ("symlink", "root-link", "/"),
            ("file", f"root-link/etc/x-{u}", b"absolute symlink parent\n"),
            ("symlink", "up-link", "../../../../../../../../../../" + str(outside)),
            ("file", "up-link/pwned", b"relative symlink parent\n"),
            ("symlink", "abs-link", str(outside)),
            ("file", "abs-link/pwned-too", b"absolute symlink to a host path\n"),
        ]
    )
    layer = registry_env.compress_layer(tar)
    img = push_layers(extra_images, registry, f"pycrio-test/symlinks-{u}", "v1", [layer])
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))
    pull(d, img.name)
    (chain,) = image_chains(img.built)
    diff = Storage(tmp_path).diff(chain)
    assert os.listdir(outside) == []
    assert not Path(f"/etc/x-{u}").exists()
    assert (diff / "etc" / f"x-{u}").read_bytes() == b"absolute symlink parent\n"
    inside = diff / str(outside).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"relative symlink parent\n"
    assert (inside / "pwned-too").read_bytes() == b"absolute symlink to a host path\n"
    assert os.readlink(diff / "root-link") == "/"  # the links themselves are kept


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_pulls_download_each_blob_once(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    u = uuid.uuid4().hex[:8]
    layers = [unique_layer(f"c{i}", 512 * 1024) for i in range(3)]
    img = push_layers(extra_images, registry, f"pycrio-test/concurrent-{u}", "v1", layers)
    child = push_layers(
        extra_images, registry, f"pycrio-test/concurrent-child-{u}", "v1",
        [layers[0], unique_layer("child")],
    )  # fmt: skip
    assert img.built is not None and child.built is not None
    d = image_daemon(start_daemon, tmp_path, registries=insecure(registry.host))

    barrier = threading.Barrier(5)

    def one(name: str) -> str:
        barrier.wait(10)  # all five requests in flight together
        return pull(d, name)

    # Three by tag (one pull between them) and two by digest (sharing its blobs).
    names = [img.name] * 3 + [img.by_digest] * 2
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(one, n) for n in names]]
    assert results == [img.built.config.digest] * 5
    (listed,) = list_images(d)
    assert list(listed.repo_tags) == [img.name]
    assert list(listed.repo_digests) == [img.by_digest]

    def blob_gets(repo: str, digest: str) -> int:
        return registry.count_requests("GET", f"/v2/{repo}/blobs/{digest}")

    blobs = [img.built.config.digest] + [x.digest for x in layers]
    wait_for(lambda: all(blob_gets(img.repo, b) >= 1 for b in blobs), 5, "registry log lines")
    assert {b: blob_gets(img.repo, b) for b in blobs} == {b: 1 for b in blobs}

    # A second image sharing the first layer fetches only what it lacks.
    pull(d, child.name)
    new = child.built.layers[1].digest
    wait_for(lambda: blob_gets(child.repo, new) >= 1, 5, "registry log lines")
    assert blob_gets(child.repo, layers[0].digest) == 0
    assert blob_gets(child.repo, new) == 1


# --- stalled registries ---------------------------------------------------------------------


@pytest.fixture
def stalling(extra_images: ExtraImages) -> Iterator[registry_env.StallingRegistry]:
    """A registry serving one image whose 256 KiB layer stops after half its bytes."""
    layer = unique_layer("stall", 256 * 1024)
    built = extra_images.layout.build_image([layer], tag=f"stall-{uuid.uuid4().hex[:8]}")
    server = registry_env.StallingRegistry(built, "pycrio-test/stall", "v1").start()
    yield server
    server.stop()


def test_pull_progress_timeout_aborts_a_stalled_pull(
    start_daemon, tmp_path: Path, stalling: registry_env.StallingRegistry
) -> None:
    d = image_daemon(
        start_daemon,
        tmp_path,
        registries=insecure(stalling.host),
        image='pull_progress_timeout = "1s"',
    )
    started = time.monotonic()
    err = pull_error(d, stalling.name, timeout=30)
    elapsed = time.monotonic() - started
    assert stalling.stalled.is_set()
    assert elapsed < 10, f"the stalled pull took {elapsed:.1f}s to fail"
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.details()
    layer = stalling.built.layers[0]
    assert layer.digest in err.details()
    assert stalling.host in err.details()
    assert "stalled, no data for 1s" in err.details()
    assert list_images(d) == []
    assert_store_empty(tmp_path)


def test_killed_daemon_leaves_no_partial_image(
    start_daemon, tmp_path: Path, stalling: registry_env.StallingRegistry
) -> None:
    d = image_daemon(start_daemon, tmp_path, registries=insecure(stalling.host))
    store = Storage(tmp_path)
    future = d.images().PullImage.future(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=stalling.name)),
        timeout=60,
    )
    assert stalling.stalled.wait(20), "the daemon never started the layer download"
    wait_for(lambda: store.tmp_entries() != [], 10, "a temporary layer directory")
    d.signal(signal.SIGKILL)
    d.wait(10)
    with pytest.raises(grpc.RpcError) as ei:
        future.result(timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    stalling.release()
    assert store.tmp_entries() != []  # what the killed pull was writing is still there

    d2 = image_daemon(start_daemon, tmp_path, registries=insecure(stalling.host))
    assert store.tmp_entries() == []  # cleaned before serving
    assert list_images(d2) == []
    assert not status(d2, stalling.name).HasField("image")
    assert store.layer_names() == set()
    assert "interrupted pulls" in d2.stderr()


def test_client_deadline_does_not_corrupt_the_store(
    start_daemon, tmp_path: Path, stalling: registry_env.StallingRegistry, registry, images
) -> None:
    d = image_daemon(
        start_daemon,
        tmp_path,
        registries=insecure(stalling.host, registry.host),
        image='pull_progress_timeout = "2s"',
    )
    err = pull_error(d, stalling.name, timeout=0.5)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The daemon's own pull ends by itself (stall timeout) and cleans up.
    store = Storage(tmp_path)
    wait_for(lambda: store.tmp_entries() == [], 15, "the abandoned pull to clean up")
    assert list_images(d) == []
    assert store.layer_names() == set()
    # The store still works.
    assert pull(d, images.busybox.name) == images.busybox.built.config.digest
    assert len(list_images(d)) == 1


def test_max_parallel_downloads_and_a_failed_layer_stops_the_rest(
    start_daemon, tmp_path: Path, extra_images: ExtraImages
) -> None:
    layers = [unique_layer(f"par{i}", 64 * 1024) for i in range(4)]
    built = extra_images.layout.build_image(layers, tag=f"par-{uuid.uuid4().hex[:8]}")
    server = registry_env.StallingRegistry(built, "pycrio-test/parallel", "v1").start()
    try:
        d = image_daemon(
            start_daemon,
            tmp_path,
            registries=insecure(server.host),
            image='max_parallel_downloads = 2\npull_progress_timeout = "1s"',
        )

        def layer_gets() -> list[str]:
            wanted = {f"GET /v2/{server.repo}/blobs/{x.digest}" for x in layers}
            return [r for r in list(server.requests) if r in wanted]

        started = time.monotonic()
        future = d.images().PullImage.future(
            api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=server.name)), timeout=30
        )
        assert server.stalled.wait(10)
        time.sleep(0.3)
        assert len(layer_gets()) == 2  # two at a time, as configured
        with pytest.raises(grpc.RpcError) as ei:
            future.result(timeout=30)
        elapsed = time.monotonic() - started
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Once a layer failed, the queued ones were not started.
        assert len(layer_gets()) == 2
        assert elapsed < 8, f"the failed pull took {elapsed:.1f}s"
        assert_store_empty(tmp_path)
    finally:
        server.stop()


def test_stalled_mirror_falls_back_to_the_registry(
    start_daemon, tmp_path: Path, registry, extra_images: ExtraImages
) -> None:
    repo = f"pycrio-test/stall-mirror-{uuid.uuid4().hex[:8]}"
    img = push_layers(extra_images, registry, repo, "v1", [unique_layer("sm", 128 * 1024)])
    assert img.built is not None
    mirror = registry_env.StallingRegistry(img.built, repo, "v1").start()
    try:
        conf = (
            f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n'
        )
        d = image_daemon(
            start_daemon, tmp_path, registries=conf, image='pull_progress_timeout = "1s"'
        )
        assert pull(d, img.name, timeout=30) == img.built.config.digest
        assert mirror.stalled.is_set()  # the mirror was tried first, and stalled
        assert f"mirror {mirror.host} failed" in d.stderr()
        layer = img.built.layers[0].digest
        uri = f"/v2/{repo}/blobs/{layer}"
        wait_for(lambda: registry.count_requests("GET", uri) >= 1, 5, "the registry's log")
        assert registry.count_requests("GET", uri) == 1
        assert Storage(tmp_path).tmp_entries() == []
    finally:
        mirror.stop()
