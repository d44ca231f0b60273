"""Sans-IO tests of manifest, index and config parsing and platform selection."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from pycrio.errors import InvalidArgument, NotFound
from pycrio.image import manifest as m

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
D3 = "sha256:" + "c" * 64


def _bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def oci_manifest(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": m.MEDIA_TYPE_OCI_MANIFEST,
        "config": {"mediaType": m.MEDIA_TYPE_OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [
            {"mediaType": m.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": D2, "size": 20},
            {"mediaType": m.MEDIA_TYPE_OCI_LAYER_ZSTD, "digest": D3, "size": 30},
        ],
        "annotations": {"org.opencontainers.image.title": "t"},
    }
    doc.update(over)
    return doc


def index_doc(entries: list[tuple[str, str, str]], media_type: str = m.MEDIA_TYPE_OCI_INDEX):
    manifests = []
    for i, (os_, arch, variant) in enumerate(entries):
        plat = {"os": os_, "architecture": arch}
        if variant:
            plat["variant"] = variant
        manifests.append(
            {
                "mediaType": m.MEDIA_TYPE_OCI_MANIFEST,
                "digest": "sha256:" + f"{i:x}" * 64,
                "size": 100 + i,
                "platform": plat,
            }
        )
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}


# --- digests -------------------------------------------------------------------


def test_parse_digest_accepts_sha256_and_sha512() -> None:
    assert m.parse_digest(D1) == ("sha256", "a" * 64)
    assert m.parse_digest("sha512:" + "0" * 128)[0] == "sha512"


@pytest.mark.parametrize(
    "bad",
    ["", "sha256", "sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "sha256:../../etc"],
)
def test_parse_digest_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="digest"):
        m.parse_digest(bad)


def test_verify_digest_and_incremental_verifier() -> None:
    data = b"hello world"
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    assert m.compute_digest(data) == good
    m.verify_digest(data, good)
    with pytest.raises(m.DigestMismatch, match="expected " + D1):
        m.verify_digest(data, D1, what="thing")
    v = m.DigestVerifier(good)
    v.update(b"hello ")
    v.update(b"world")
    v.verify()
    assert v.size == len(data)
    bad = m.DigestVerifier(D1, what="blob x")
    bad.update(data)
    with pytest.raises(m.DigestMismatch, match="blob x: digest mismatch after 11 bytes"):
        bad.verify()


# --- manifests -------------------------------------------------------------------


def test_parse_oci_manifest() -> None:
    parsed = m.parse_manifest(_bytes(oci_manifest()), m.MEDIA_TYPE_OCI_MANIFEST)
    assert isinstance(parsed, m.ImageManifest)
    assert parsed.media_type == m.MEDIA_TYPE_OCI_MANIFEST
    assert parsed.config == m.Descriptor(m.MEDIA_TYPE_OCI_CONFIG, D1, 10)
    assert [layer.digest for layer in parsed.layers] == [D2, D3]
    assert [m.layer_compression(layer) for layer in parsed.layers] == ["gzip", "zstd"]
    assert parsed.annotations == {"org.opencontainers.image.title": "t"}
    assert [d.digest for d in m.descriptors_in(parsed)] == [D1, D2, D3]


def test_parse_docker_schema2_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": m.MEDIA_TYPE_DOCKER_MANIFEST,
        "config": {"mediaType": m.MEDIA_TYPE_DOCKER_CONFIG, "digest": D1, "size": 1},
        "layers": [{"mediaType": m.MEDIA_TYPE_DOCKER_LAYER_GZIP, "digest": D2, "size": 2}],
    }
    parsed = m.parse_manifest(_bytes(doc), m.MEDIA_TYPE_DOCKER_MANIFEST)
    assert isinstance(parsed, m.ImageManifest)
    assert parsed.media_type == m.MEDIA_TYPE_DOCKER_MANIFEST
    assert m.layer_compression(parsed.layers[0]) == "gzip"


def test_parse_docker_manifest_list_with_platforms() -> None:
    doc = index_doc(
        [("linux", "amd64", ""), ("linux", "arm", "v7")], m.MEDIA_TYPE_DOCKER_MANIFEST_LIST
    )
    parsed = m.parse_manifest(
        _bytes(doc), "application/vnd.docker.distribution.manifest.list.v2+json"
    )
    assert isinstance(parsed, m.ImageIndex)
    assert parsed.media_type == m.MEDIA_TYPE_DOCKER_MANIFEST_LIST
    assert [str(d.platform) for d in parsed.manifests] == ["linux/amd64", "linux/arm/v7"]


def test_media_type_detected_without_header_or_field() -> None:
    doc = oci_manifest()
    del doc["mediaType"]
    assert m.detect_media_type(_bytes(doc), "application/octet-stream") == m.MEDIA_TYPE_OCI_MANIFEST
    idx = index_doc([("linux", "amd64", "")])
    del idx["mediaType"]
    assert m.detect_media_type(_bytes(idx), None) == m.MEDIA_TYPE_OCI_INDEX
    # A manifest-type header is trusted when the body does not say.
    assert m.detect_media_type(_bytes(doc), m.MEDIA_TYPE_DOCKER_MANIFEST + "; charset=utf-8") == (
        m.MEDIA_TYPE_DOCKER_MANIFEST
    )


def test_header_contradicting_body_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="registry said .* but the manifest says"):
        m.parse_manifest(_bytes(oci_manifest()), m.MEDIA_TYPE_DOCKER_MANIFEST)


@pytest.mark.parametrize(
    "doc,ctype",
    [
        ({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": [], "history": []}, None),
        ({"schemaVersion": 1, "fsLayers": [], "signatures": []}, "application/json"),
        ({"schemaVersion": 1}, m.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED),
    ],
)
def test_schema1_is_rejected_with_a_fix(doc: dict[str, Any], ctype: str | None) -> None:
    with pytest.raises(InvalidArgument, match="schema 1 manifests are not supported; re-push"):
        m.parse_manifest(_bytes(doc), ctype, source="example.com/old:1")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(schemaVersion=3), "unsupported schemaVersion 3"),
        (lambda d: d["config"].update(digest="sha256:nothex"), "config: invalid digest"),
        (lambda d: d["layers"][0].update(size=-1), r"layers\[0\]: 'size' must be"),
        (lambda d: d["layers"][1].update(size=True), r"layers\[1\]: 'size' must be"),
        (lambda d: d["layers"][0].pop("mediaType"), "missing required field 'mediaType'"),
        (lambda d: d.pop("layers"), "no 'layers' list"),
        (lambda d: d.update(annotations={"a": 1}), "'annotations' must be a map of strings"),
        (
            lambda d: d["config"].update(mediaType="application/vnd.cncf.helm.config.v1+json"),
            "not a container image",
        ),
    ],
)
def test_invalid_manifests_name_the_problem(mutate: Any, message: str) -> None:
    doc = oci_manifest()
    mutate(doc)
    with pytest.raises(InvalidArgument, match=message):
        m.parse_manifest(_bytes(doc), None, source="img")


def test_non_json_and_oversized_manifests_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        m.parse_manifest(b"<html>", None)
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        m.parse_manifest(b"[]", None)
    with pytest.raises(InvalidArgument, match="more than"):
        m.parse_manifest(b" " * (m.MAX_MANIFEST_SIZE + 1), None)
    with pytest.raises(InvalidArgument, match="cannot tell what kind"):
        m.parse_manifest(b'{"schemaVersion": 2}', "application/json")


def test_unknown_layer_media_type_is_refused_before_download() -> None:
    layer = m.Descriptor("application/x-foo", D1, 1)
    with pytest.raises(InvalidArgument, match="unsupported media type 'application/x-foo'"):
        m.layer_compression(layer)


# --- configs -----------------------------------------------------------------------


def config_doc(**cfg: Any) -> dict[str, Any]:
    return {
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "a"}, {"created_by": "b"}],
    }


def test_parse_image_config_all_runtime_fields() -> None:
    doc = config_doc(
        User="1000:1000",
        Env=["PATH=/bin", "A=b=c"],
        Entrypoint=["/bin/app"],
        Cmd=["--flag"],
        WorkingDir="/srv",
        Volumes={"/data": {}, "/cache": {}},
        StopSignal="SIGQUIT",
        Labels={"k": "v"},
        ExposedPorts={"8080/tcp": {}, "53/udp": {}},
    )
    cfg = m.parse_image_config(_bytes(doc))
    assert cfg.architecture == "arm64" and cfg.variant == "v8" and cfg.os == "linux"
    assert cfg.user == "1000:1000"
    assert cfg.env == ("PATH=/bin", "A=b=c")
    assert cfg.entrypoint == ("/bin/app",)
    assert cfg.cmd == ("--flag",)
    assert cfg.working_dir == "/srv"
    assert cfg.volumes == ("/cache", "/data")
    assert cfg.stop_signal == "SIGQUIT"
    assert cfg.labels == {"k": "v"}
    assert cfg.exposed_ports == ("53/udp", "8080/tcp")
    assert cfg.diff_ids == (D1, D2)
    assert cfg.history_count == 2


def test_parse_image_config_nulls_and_docker_strslice() -> None:
    doc = config_doc(Entrypoint="/bin/sh -c", Cmd=None, Env=None, Labels=None, Volumes=None)
    cfg = m.parse_image_config(_bytes(doc))
    assert cfg.entrypoint == ("/bin/sh -c",)
    assert cfg.cmd == () and cfg.env == () and cfg.labels == {} and cfg.volumes == ()
    doc = config_doc()
    doc["config"] = None
    assert m.parse_image_config(_bytes(doc)).user == ""


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.pop("rootfs"), "missing 'rootfs'"),
        (lambda d: d["rootfs"].update(type="tarballs"), "rootfs.type must be 'layers'"),
        (lambda d: d["rootfs"].update(diff_ids=["sha256:x"]), "rootfs.diff_ids: invalid digest"),
        (lambda d: d["config"].update(Env=[1]), "'Env' must be a list of strings"),
        (lambda d: d["config"].update(ExposedPorts=["80"]), "'ExposedPorts' must be an object"),
        (lambda d: d["config"].update(User=0), "'User' must be a string"),
    ],
)
def test_invalid_configs_name_the_field(mutate: Any, message: str) -> None:
    doc = config_doc()
    mutate(doc)
    with pytest.raises(InvalidArgument, match=message):
        m.parse_image_config(_bytes(doc))


def test_config_layer_count_must_match_manifest() -> None:
    man = m.parse_manifest(_bytes(oci_manifest()), None)
    assert isinstance(man, m.ImageManifest)
    cfg = m.parse_image_config(_bytes(config_doc()))
    m.check_config_matches_manifest(man, cfg)
    doc = config_doc()
    doc["rootfs"]["diff_ids"] = [D1]
    with pytest.raises(InvalidArgument, match="lists 2 layers but the config has 1"):
        m.check_config_matches_manifest(man, m.parse_image_config(_bytes(doc)))


# --- platforms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "machine,expected",
    [
        ("x86_64", ("amd64", "")),
        ("aarch64", ("arm64", "v8")),
        ("armv7l", ("arm", "v7")),
        ("armv6l", ("arm", "v6")),
        ("i686", ("386", "")),
        ("ppc64le", ("ppc64le", "")),
        ("s390x", ("s390x", "")),
        ("riscv64", ("riscv64", "")),
    ],
)
def test_goarch_mapping(machine: str, expected: tuple[str, str]) -> None:
    assert m.goarch_for_machine(machine) == expected


def test_unknown_machine_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="unknown machine architecture 'vax'"):
        m.goarch_for_machine("vax")


def test_host_platform_uses_linux_goarch_names() -> None:
    assert m.host_platform("aarch64", "Linux") == m.Platform("linux", "arm64", "v8")
    assert str(m.host_platform("armv7l", "Linux")) == "linux/arm/v7"


def test_wanted_platforms_order() -> None:
    arm7 = m.wanted_platforms(m.Platform("linux", "arm", "v7"))
    assert [p.variant for p in arm7] == ["v7", "v6", "v5", ""]
    assert [p.variant for p in m.wanted_platforms(m.Platform("linux", "arm64", "v8"))] == ["v8", ""]
    assert [p.variant for p in m.wanted_platforms(m.Platform("linux", "amd64"))] == [""]


def _select(entries: list[tuple[str, str, str]], wanted: m.Platform) -> int:
    idx = m.parse_manifest(_bytes(index_doc(entries)), None)
    assert isinstance(idx, m.ImageIndex)
    chosen = m.select_manifest(idx, wanted)
    return idx.manifests.index(chosen)


def test_select_exact_platform() -> None:
    entries = [("linux", "arm64", "v8"), ("linux", "amd64", ""), ("windows", "amd64", "")]
    assert _select(entries, m.Platform("linux", "amd64")) == 1
    assert _select(entries, m.Platform("linux", "arm64", "v8")) == 0


def test_select_arm64_without_variant_label() -> None:
    entries = [("linux", "amd64", ""), ("linux", "arm64", "")]
    assert _select(entries, m.Platform("linux", "arm64", "v8")) == 1


def test_select_prefers_best_compatible_arm_variant() -> None:
    entries = [("linux", "arm", "v5"), ("linux", "arm", "v6"), ("linux", "arm", "v8")]
    assert _select(entries, m.Platform("linux", "arm", "v7")) == 1


def test_select_skips_non_image_entries() -> None:
    doc = index_doc([("linux", "amd64", ""), ("linux", "amd64", "")])
    doc["manifests"][0]["mediaType"] = m.MEDIA_TYPE_OCI_INDEX  # nested index: not runnable
    idx = m.parse_manifest(_bytes(doc), None)
    assert isinstance(idx, m.ImageIndex)
    assert m.select_manifest(idx, m.Platform("linux", "amd64")) is idx.manifests[1]


def test_no_matching_platform_lists_what_exists() -> None:
    idx = m.parse_manifest(
        _bytes(index_doc([("linux", "s390x", ""), ("linux", "arm", "v7")])), None
    )
    assert isinstance(idx, m.ImageIndex)
    with pytest.raises(
        NotFound, match=r"no image for platform linux/amd64 .* linux/arm/v7, linux/s390x"
    ):
        m.select_manifest(idx, m.Platform("linux", "amd64"), source="quay.io/x:1")
