"""Helpers for e2e image tests: a daemon configured for test registries, and CRI calls.

Every daemon gets its own registries.conf, policy.json, per-namespace policy
directory and certs.d directory in its test's tmp_path, so nothing from the
host's /etc/containers leaks in.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import registry_env
from cri_api.v1 import api_pb2
from daemon import DaemonProcess

ACCEPT_ALL: Mapping[str, Any] = {"default": [{"type": "insecureAcceptAnything"}]}
PULL_TIMEOUT = 60


def insecure(*hosts: str) -> str:
    """registries.conf tables marking plain-HTTP test registries as insecure."""
    return "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n\n' for h in hosts)


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def image_daemon(
    start_daemon: Callable[..., DaemonProcess],
    tmp: Path,
    *,
    registries: str = "",
    policy: Mapping[str, Any] = ACCEPT_ALL,
    image: str = "",
    top: str = "",
    wait: bool = True,
) -> DaemonProcess:
    """Start pycrio with [image] settings pointing at files in ``tmp``."""
    (tmp / "registries.conf").write_text(registries)
    (tmp / "policy.json").write_text(json.dumps(policy))
    (tmp / "policies").mkdir(exist_ok=True)
    (tmp / "certs.d").mkdir(exist_ok=True)
    config = (
        f"{top}\n"
        "[image]\n"
        f"registries_conf = {toml_str(tmp / 'registries.conf')}\n"
        f"registries_conf_dir = {toml_str(tmp / 'registries.conf.d')}\n"
        f"signature_policy = {toml_str(tmp / 'policy.json')}\n"
        f"signature_policy_dir = {toml_str(tmp / 'policies')}\n"
        f"certs_dirs = [{toml_str(tmp / 'certs.d')}]\n"
        f"{image}\n"
    )
    return start_daemon(config=config, wait=wait)


def pull(
    d: DaemonProcess,
    name: str,
    *,
    auth: api_pb2.AuthConfig | None = None,
    namespace: str = "",
    timeout: float = PULL_TIMEOUT,
) -> str:
    req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=name))
    if auth is not None:
        req.auth.CopyFrom(auth)
    if namespace:
        req.sandbox_config.metadata.namespace = namespace
        req.sandbox_config.metadata.name = "pod"
        req.sandbox_config.metadata.uid = "uid-1"
    return d.images().PullImage(req, timeout=timeout).image_ref


def pull_error(d: DaemonProcess, name: str, **kwargs: Any) -> grpc.RpcError:
    """Pull ``name`` expecting a gRPC error, and return it."""
    try:
        ref = pull(d, name, **kwargs)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"pulling {name} succeeded ({ref}) but an error was expected")


def status(d: DaemonProcess, name: str, verbose: bool = False) -> api_pb2.ImageStatusResponse:
    return d.images().ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=name), verbose=verbose),
        timeout=10,
    )


def list_images(d: DaemonProcess, name: str = "") -> list[api_pb2.Image]:
    req = api_pb2.ListImagesRequest()
    if name:
        req.filter.image.image = name
    return list(d.images().ListImages(req, timeout=10).images)


def remove(d: DaemonProcess, name: str) -> None:
    d.images().RemoveImage(
        api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=name)), timeout=10
    )


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain IDs, computed here independently of pycrio's code."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(
            diff_id
            if not out
            else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        )
    return out


def image_chains(built: registry_env.BuiltImage) -> list[str]:
    return chain_ids([layer.diff_id for layer in built.layers])


@dataclass(frozen=True)
class Storage:
    """Paths of a daemon's image storage (root is ``<tmp>/root``)."""

    tmp: Path
    driver: str = "overlay"

    @property
    def root(self) -> Path:
        return self.tmp / "root" / "storage"

    @property
    def layers(self) -> Path:
        return self.root / self.driver / "layers"

    @property
    def tmpdir(self) -> Path:
        return self.root / "tmp"

    def layer(self, chain_id: str) -> Path:
        return self.layers / chain_id.split(":", 1)[1]

    def diff(self, chain_id: str) -> Path:
        return self.layer(chain_id) / "diff"

    def layer_names(self) -> set[str]:
        return set(os.listdir(self.layers)) if self.layers.exists() else set()

    def tmp_entries(self) -> list[str]:
        return sorted(os.listdir(self.tmpdir)) if self.tmpdir.exists() else []


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- images built for these tests ---------------------------------------------------------


@dataclass(frozen=True)
class ExtraImages:
    """Images the e2e image tests add to the session registry, next to ``TestImages``."""

    __test__ = False

    whiteout: registry_env.PushedImage  # busybox, a layer with files, a layer of whiteouts
    nobody: registry_env.PushedImage  # User "nobody"
    workdir: Path
    skopeo: registry_env.Skopeo
    layout: registry_env.OCILayout
    base: registry_env.Blob  # the busybox gzip layer every standard image shares


def build_extra_images(workdir: Path, registry: registry_env.RegistryServer) -> ExtraImages:
    skopeo = registry_env.Skopeo(workdir / "skopeo")
    layout = registry_env.OCILayout(workdir / "layout")
    base = registry_env.compress_layer(registry_env.busybox_rootfs_tar())
    files = registry_env.compress_layer(
        registry_env.make_tar(
            {
                "etc/pycrio-test/gone": b"deleted by the next layer\n",
                "etc/pycrio-test/kept": b"kept\n",
                "opaque/old": b"hidden by the opaque dir\n",
                "opaque/sub/older": b"hidden too\n",
            },
            dirs=["etc/pycrio-test", "opaque", "opaque/sub"],
        )
    )
    whiteouts = registry_env.compress_layer(
        registry_env.make_tar(
            {
                "etc/pycrio-test/.wh.gone": b"",
                "opaque/.wh..wh..opq": b"",
                "opaque/new": b"from the top layer\n",
            },
            dirs=["etc/pycrio-test", "opaque"],
        )
    )
    wh = layout.build_image([base, files, whiteouts], tag="whiteout")
    nobody = layout.build_image([base], tag="nobody", config={"User": "nobody"})
    return ExtraImages(
        whiteout=registry_env.push(
            skopeo, layout, "whiteout", registry, "pycrio-test/whiteout", "v1", built=wh
        ),
        nobody=registry_env.push(
            skopeo, layout, "nobody", registry, "pycrio-test/nobody", "v1", built=nobody
        ),
        workdir=workdir,
        skopeo=skopeo,
        layout=layout,
        base=base,
    )


def push_layers(
    extra: ExtraImages,
    registry: registry_env.RegistryServer,
    repo: str,
    tag: str,
    layers: Sequence[registry_env.Blob],
    config: Mapping[str, Any] | None = None,
) -> registry_env.PushedImage:
    """Build an image of ``layers`` and push it to ``registry`` as ``repo:tag``."""
    layout_tag = f"{repo.replace('/', '-')}-{tag}"
    built = extra.layout.build_image(layers, tag=layout_tag, config=config)
    return registry_env.push(
        extra.skopeo, extra.layout, layout_tag, registry, repo, tag, built=built
    )
