"""Pull from a registry that misbehaves on purpose (issue 17).

Invalid JSON, wrong media types, manifests that lie about sizes or digests,
bodies that never end or stop short, redirect loops, huge headers, layers
with hostile tar entries, and manifests mutated at random. Every pull must
fail with a documented code and a message naming the image and the reason,
within a bound, and leave nothing in the store: no image, no layer, no temp
file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import evil_registry as er
import grpc
import pytest
from container_e2e import module_daemon
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from registry_env import make_tar_entries

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

#: [image] pull_progress_timeout of this daemon: a stalled body fails after this long
STALL = 3
#: a failed pull answers within this (stall timeout, retries, redirects...)
BOUND = 30.0
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,  # a foreign (non-distributable) layer
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
}


@pytest.fixture(scope="module")
def evil() -> Iterator[er.EvilRegistry]:
    reg = er.EvilRegistry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def crio(
    tmp_path_factory: pytest.TempPathFactory, evil: er.EvilRegistry
) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("rfuzz")
    with module_daemon(tmp, evil.host, []) as d:
        yield d


@pytest.fixture
def fresh(evil: er.EvilRegistry) -> Iterator[er.EvilRegistry]:
    """The registry with no rules left over from the previous test."""
    evil.rules.clear()
    yield evil
    evil.rules.clear()


def store_snapshot(d: DaemonProcess) -> tuple[list[str], list[str]]:
    """Image ids, and every path under the storage dir except the databases."""
    ids = sorted(
        i.id for i in d.images().ListImages(api_pb2.ListImagesRequest(), timeout=30).images
    )
    storage = d.tmp / "root" / "storage"
    paths = sorted(
        str(p.relative_to(storage))
        for p in storage.rglob("*")
        # files, layers and anything in tmp/; an empty directory (blobs/sha256) is no content
        if (p.is_file() or p.parent.name == "layers" or "tmp" in p.relative_to(storage).parts)
        and not p.name.startswith("images.db")
    )
    return ids, paths


_serial = iter(range(1_000_000))


def try_pull(d: DaemonProcess, name: str) -> tuple[grpc.RpcError | None, float]:
    """Pull ``name``: the error (None on success) and how long it took."""
    started = time.monotonic()
    try:
        d.images().PullImage(
            api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=BOUND + 30
        )
    except grpc.RpcError as e:
        return e, time.monotonic() - started
    return None, time.monotonic() - started


def assert_clean_failure(
    d: DaemonProcess,
    image: er.EvilImage,
    err: grpc.RpcError,
    took: float,
    before: tuple[list[str], list[str]],
    reasons: tuple[str, ...] = (),
) -> None:
    """A documented code, in time, naming the image (and a reason), nothing stored."""
    details = err.details() or ""
    assert err.code() in ALLOWED, f"{err.code().name}: {details}"
    assert took < BOUND, f"{err.code().name} after {took:.1f}s: {details}"
    assert image.repo in details, f"the message does not name the image: {details}"
    if reasons:
        assert any(r.lower() in details.lower() for r in reasons), details
    # nothing partial: same images, same files under storage (temp dirs emptied)
    deadline = time.monotonic() + 15
    while (after := store_snapshot(d)) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(set(after[0] + after[1]) - set(before[0] + before[1]))
    gone = sorted(set(before[0] + before[1]) - set(after[0] + after[1]))
    assert after == before, f"left in the store: {left}; gone: {gone}"
    d.runtime().Version(api_pb2.VersionRequest(), timeout=10)


def pull_fails(d: DaemonProcess, evil: er.EvilRegistry, image: er.EvilImage, *reasons: str) -> None:
    """Pull ``image``: it must fail cleanly (see assert_clean_failure)."""
    name = evil.add(image)
    before = store_snapshot(d)
    err, took = try_pull(d, name)
    assert err is not None, f"pull of {name} succeeded"
    assert_clean_failure(d, image, err, took, before, reasons)


def _image(kind: str, **kw: Any) -> er.EvilImage:
    return er.small_image(f"evil/{kind}-{next(_serial)}", **kw)


def _manifest_rule(img: er.EvilImage) -> str:
    return f"/v2/{img.repo}/manifests/"


def _blob_rule(img: er.EvilImage, blob: Any) -> str:
    return f"/v2/{img.repo}/blobs/{blob.digest}"


Case = Callable[[er.EvilRegistry, er.EvilImage], tuple[str, ...]]


def _invalid_json(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.body(b'{"schemaVersion": 2, "layers": [')
    return ("json", "manifest")


def _manifest_is_html(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.body(b"<html>login</html>", "text/html")
    return ("manifest", "media type", "json")


def _unknown_media_type(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    doc = json.loads(img.manifest)
    doc["mediaType"] = "application/vnd.evil.v1+json"
    evil.rules[_manifest_rule(img)] = er.body(json.dumps(doc).encode(), doc["mediaType"])
    return ("media type", "mediatype", "application/vnd.evil")


def _layer_smaller_than_said(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    doc = json.loads(img.manifest)
    doc["layers"][0]["size"] -= 10
    evil.rules[_manifest_rule(img)] = er.body(json.dumps(doc).encode())
    return ("size", "bytes", "digest")


def _layer_larger_than_said(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    doc = json.loads(img.manifest)
    doc["layers"][0]["size"] += 1000
    evil.rules[_manifest_rule(img)] = er.body(json.dumps(doc).encode())
    return ("size", "bytes", "short", "ended", "digest")


def _config_digest_lies(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_blob_rule(img, img.config)] = er.body(img.config.data + b" ", "application/json")
    return ("digest", "size")


def _layer_digest_lies(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    data = bytearray(img.layers[0].data)
    data[-9] ^= 0xFF  # inside the gzip trailer: the CRC / size no longer match
    evil.rules[_blob_rule(img, img.layers[0])] = er.body(bytes(data), "application/octet-stream")
    return ("digest", "gzip", "crc", "corrupt", "layer")


def _endless_layer(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_blob_rule(img, img.layers[0])] = er.endless()
    return ("size", "bytes", "digest", "larger")


def _endless_manifest(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.endless(b"{" * 65536)
    return ("larger", "manifest")


def _truncated_layer(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    layer = img.layers[0]
    evil.rules[_blob_rule(img, layer)] = er.truncated(layer.data[:20], layer.size)
    return ("layer", "ended", "short", "incomplete", "connection", "bytes")


def _truncated_manifest(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.truncated(img.manifest[:30], len(img.manifest))
    return ("manifest",)


def _redirect_loop(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.redirect_to(f"/v2/{img.repo}/manifests/{img.tag}")
    return ("redirect",)


def _huge_headers(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.huge_headers()
    return ("header", "manifest")


def _server_error_page(evil: er.EvilRegistry, img: er.EvilImage) -> tuple[str, ...]:
    evil.rules[_manifest_rule(img)] = er.status(502, b"<html>" + b"x" * 200_000)
    return ("502",)


CASES: dict[str, Case] = {
    "invalid-json": _invalid_json,
    "manifest-is-html": _manifest_is_html,
    "unknown-media-type": _unknown_media_type,
    "layer-smaller-than-said": _layer_smaller_than_said,
    "layer-larger-than-said": _layer_larger_than_said,
    "config-digest-lies": _config_digest_lies,
    "layer-digest-lies": _layer_digest_lies,
    "endless-layer": _endless_layer,
    "endless-manifest": _endless_manifest,
    "truncated-layer": _truncated_layer,
    "truncated-manifest": _truncated_manifest,
    "redirect-loop": _redirect_loop,
    "huge-headers": _huge_headers,
    "server-error-page": _server_error_page,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_misbehaving_registry_fails_the_pull_cleanly(
    crio: DaemonProcess, fresh: er.EvilRegistry, case: str
) -> None:
    img = _image(case)
    reasons = CASES[case](fresh, img)
    pull_fails(crio, fresh, img, *reasons)


HOSTILE_LAYERS = {
    "dotdot": [("file", "../../escaped", b"x")],
    "absolute": [("file", "/etc/escaped", b"x")],
    "hardlink-out": [("hardlink", "h", "../../../etc/passwd")],
    "symlink-then-through": [("symlink", "d", "/etc"), ("file", "d/escaped", b"x")],
    "device": [("chardev", "dev/evil", "1:1")],
}


@pytest.mark.parametrize("kind", list(HOSTILE_LAYERS))
def test_hostile_tar_entries(
    crio: DaemonProcess, fresh: er.EvilRegistry, kind: str, tmp_path: Path
) -> None:
    # a file unique to this image first, so the layer is new to the store
    entries = [("file", f"id-{kind}", b"x"), *HOSTILE_LAYERS[kind]]
    img = _image(kind, layer_tar=make_tar_entries(entries))
    before = store_snapshot(crio)
    name = fresh.add(img)
    err, took = try_pull(crio, name)
    if err is not None:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert_clean_failure(crio, img, err, took, before)
    else:
        # kept inside the layer (a symlink is resolved in the layer's root; a
        # device node is the image's business): nothing lands outside
        assert kind in ("device", "symlink-then-through"), f"{kind} layer was accepted"
        crio.images().RemoveImage(
            api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=30
        )
    for escaped in (Path("/etc/escaped"), crio.tmp / "escaped", crio.tmp / "root" / "escaped"):
        assert not escaped.exists(), escaped


# --- random manifests ------------------------------------------------------------------

_ODD_DIGESTS = st.sampled_from(
    ["", "sha256:", "sha256:xyz", "md5:" + "0" * 32, "sha256:" + "0" * 64, "sha512:" + "a" * 128,
     "sha256:" + "A" * 64, "../../etc/passwd", "sha256:" + "0" * 63 + "\n"]
)  # fmt: skip
_ODD_SIZES = st.sampled_from([-1, 0, 1, 2**31, 2**53 + 1, 2**63, 10**30, 1.5, "12", None, True])
_ODD_TYPES = st.sampled_from(
    ["", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar",
     "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "text/plain",
     "application/vnd.oci.image.manifest.v1+json", 7, None]
)  # fmt: skip


@st.composite
def mutated_manifests(draw: st.DrawFn, img: er.EvilImage) -> bytes:
    """The image's manifest with one to three fields replaced by lies or junk."""
    doc: dict[str, Any] = json.loads(img.manifest)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "config", "layer", "layers", "annotations", "raw"]))
        if where == "top":
            key = draw(st.sampled_from(["schemaVersion", "mediaType", "config", "layers"]))
            doc[key] = draw(st.sampled_from([None, 1, 3, "2", [], {}, "x", -1, 2**64]))
        elif where in ("config", "layer"):
            layers = doc.get("layers")
            first = layers[0] if isinstance(layers, list) and layers else None
            desc = doc.get("config") if where == "config" else first
            if not isinstance(desc, dict):
                continue
            field = draw(st.sampled_from(["digest", "size", "mediaType", "urls", "platform"]))
            value = {
                "digest": _ODD_DIGESTS,
                "size": _ODD_SIZES,
                "mediaType": _ODD_TYPES,
                "urls": st.sampled_from([["http://127.0.0.1:1/x"], "x", [1], ["file:///etc"]]),
                "platform": st.sampled_from([{}, {"os": 1}, "linux"]),
            }[field]
            desc[field] = draw(value)
        elif where == "layers" and isinstance(doc.get("layers"), list):
            n = draw(st.sampled_from([0, 2, 200]))
            doc["layers"] = (doc["layers"] * n)[:n] if doc["layers"] else []
        elif where == "annotations":
            doc["annotations"] = draw(
                st.sampled_from([{"a": "\x00"}, {"": ""}, [], "x", {"k": "v" * 100_000}])
            )
        else:
            raw = json.dumps(doc).encode()
            cut = draw(st.integers(0, len(raw)))
            return raw[:cut] + draw(st.sampled_from([b"", b"\x00", b"\xff\xfe", b"}}"]))
    return json.dumps(doc).encode()


@fuzz_settings(25)
@given(data=st.data())
def test_random_manifests_fail_cleanly_or_pull(
    crio: DaemonProcess, evil: er.EvilRegistry, data: st.DataObject
) -> None:
    evil.rules.clear()
    img = _image("random")
    manifest = data.draw(mutated_manifests(img), label="manifest")
    evil.rules[_manifest_rule(img)] = er.body(manifest)
    name = evil.add(img)
    before = store_snapshot(crio)
    try:
        err, took = try_pull(crio, name)
        if err is not None:
            assert_clean_failure(crio, img, err, took, before)
        else:
            # a lie the puller can ignore (an annotation, a media type it tolerates)
            crio.images().RemoveImage(
                api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=30
            )
    finally:
        evil.rules.clear()
