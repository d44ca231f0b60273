"""Extension hooks called from the core's CRI code are isolated per plugin.

A plugin raising must neither fail the call in a way the core did not choose
nor keep the other plugins from running, and its name is in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from cri_api.v1 import api_pb2

from pycrio.config import Config, defaults
from pycrio.container.record import ContainerRecord
from pycrio.cri.containers import ContainerService
from pycrio.cri.images import ImageService
from pycrio.errors import Internal, InvalidArgument, Unavailable
from pycrio.image.image_store import ImageRecord
from pycrio.kernel.context import CallContext
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.kernel import build_kernel, call_each


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    config = defaults()
    config.data["root"] = str(tmp_path / "root")
    config.data["runroot"] = str(tmp_path / "run")
    return config


class Crashes:
    @hookimpl
    def pycrio_adjust_container_spec(self, spec):
        raise ValueError("bad hook file")

    @hookimpl
    def pycrio_image_in_use(self, image_id):
        raise OSError("state unreadable")


class Refuses:
    @hookimpl
    def pycrio_adjust_container_spec(self, spec):
        raise InvalidArgument("annotation x is not allowed")


class Adjusts:
    @hookimpl
    def pycrio_adjust_container_spec(self, spec):
        spec["annotations"]["adjusted"] = "yes"


def test_spec_adjustment_failures_fail_the_create_and_the_others_still_run(
    cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = build_kernel(cfg, lambda kernel: [], found=[])
    for plugin in (Crashes(), Refuses(), Adjusts()):
        kernel.pm.register(plugin, name=type(plugin).__name__.lower())
    record = ContainerRecord(
        id="c", name="c", attempt=0, sandbox_id="p", reservation="r", image="i",
        image_id="", image_ref="", runtime_handler="runc", created_at=0,
    )  # fmt: skip
    spec: dict = {"annotations": {}}
    with caplog.at_level(logging.ERROR, logger="pycrio.kernel"):
        errors = ContainerService._adjust(
            SimpleNamespace(kernel=kernel),  # type: ignore[arg-type]
            spec,
            record,
            None,  # type: ignore[arg-type]
            CallContext("CreateContainer"),
        )
    assert spec["annotations"] == {"adjusted": "yes"}
    internal, refused = sorted(errors, key=lambda e: type(e).__name__)
    assert (type(internal), type(refused)) == (Internal, InvalidArgument)
    assert refused.message == "annotation x is not allowed"
    assert internal.message == (
        "plugin 'crashes' failed in pycrio_adjust_container_spec: ValueError: bad hook file"
    )
    assert "plugin 'refuses' failed in pycrio_adjust_container_spec" in caplog.text


def test_remove_image_refuses_when_a_usage_plugin_fails(cfg: Config) -> None:
    kernel = build_kernel(cfg, lambda kernel: [ImageService(kernel)], found=[])
    assert call_each(kernel, "pycrio_startup", kernel=kernel) == []
    try:
        images = kernel.pm.get_plugin("pycrio.core:ImageService").images
        images.commit(ImageRecord(id="sha256:" + "a" * 64, repo_tags=["example.com/x:1"]))
        kernel.pm.register(Crashes(), name="crashes")
        request = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image="example.com/x:1"))
        with pytest.raises(Unavailable, match="plugin 'crashes' failed in pycrio_image_in_use"):
            kernel.hook.cri_remove_image(request=request, ctx=CallContext("RemoveImage"))
        assert images.by_name("example.com/x:1") is not None  # not removed on a guess
        kernel.pm.unregister(name="crashes")
        kernel.hook.cri_remove_image(request=request, ctx=CallContext("RemoveImage"))
        assert images.by_name("example.com/x:1") is None
    finally:
        call_each(kernel, "pycrio_shutdown", kernel=kernel)
