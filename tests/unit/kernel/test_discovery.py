"""Discovery and kernel building against really installed test distributions.

Every kernel here runs on temporary roots (never /var/lib/pycrio or
/run/pycrio) and whatever a test starts it stops: :func:`started` runs the
startup hooks and, afterwards, the shutdown hooks, and the ``no_stray_threads``
fixture fails a test that leaves a thread of its own running.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from pycrio.config import Config, defaults
from pycrio.cri import core_plugins
from pycrio.kernel.context import CallContext
from pycrio.kernel.discovery import Found, discover, load
from pycrio.kernel.hookspecs import hookimpl
from pycrio.kernel.interfaces import NetworkDriver
from pycrio.kernel.kernel import DriverLoadError, Kernel, build_kernel, call_each


@pytest.fixture(autouse=True)
def no_stray_threads() -> Iterator[None]:
    """A unit test stops what it starts: no thread of its own outlives it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"threads left running: {[t.name for t in left]}"


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """The defaults with every path the core writes under ``tmp_path``."""
    config = defaults()
    config.data["root"] = str(tmp_path / "root")
    config.data["runroot"] = str(tmp_path / "runroot")
    config.data["log_dir"] = str(tmp_path / "logs")
    config.data["api"]["listen"] = str(tmp_path / "runroot" / "pycrio.sock")
    config.data["runtime"]["container_attach_socket_dir"] = str(tmp_path / "attach")
    config.data["runtime"]["namespaces_dir"] = str(tmp_path / "ns")
    config.data["nri"] = {  # NRI, on by default, starts too: keep it off /var/run/nri
        "nri_listen": str(tmp_path / "nri.sock"),
        "nri_plugin_dir": str(tmp_path / "nri-plugins"),
    }
    return config


@contextmanager
def started(kernel: Kernel) -> Iterator[list]:
    """The startup hooks (their failures yielded), then shutdown and close."""
    try:
        yield call_each(kernel, "pycrio_startup", kernel=kernel)
    finally:
        call_each(kernel, "pycrio_shutdown", reverse=True, kernel=kernel)
        kernel.close()


@pytest.fixture
def with_plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    from stevedore import ExtensionManager

    ExtensionManager.ENTRY_POINT_CACHE.clear()
    yield
    ExtensionManager.ENTRY_POINT_CACHE.clear()


def by_name(found):
    return {(f.group, f.name): f for f in found}


def test_discover_reports_distribution_version_and_errors(with_plugins: None) -> None:
    listed = discover()
    assert all(f.obj is None and f.state == "found" for f in listed)  # nothing imported yet
    load(listed)
    found = by_name(listed)
    good = found[("pycrio.plugins", "testgood")]
    assert (good.distribution, good.version, good.status) == ("pycrio-test-good", "1.2.3", "loaded")
    assert good.obj.__name__ == "TestGoodPlugin"
    bad = found[("pycrio.plugins", "testbad")]
    assert bad.distribution == "pycrio-test-bad"
    assert bad.status == "error: RuntimeError: pycrio-test-bad is broken on purpose"
    assert "Traceback" in bad.detail
    broken = found[("pycrio.network", "testbroken")]
    assert not broken.loaded and broken.distribution == "pycrio-test-bad"
    net = found[("pycrio.network", "testnet")]
    assert net.loaded and (net.distribution, net.version) == ("pycrio-test-driver", "4.5.6")


def test_bad_plugin_is_reported_and_the_rest_loads(with_plugins: None, cfg: Config) -> None:
    kernel = build_kernel(cfg, core_plugins)
    assert len(kernel.plugin_failures) == 1
    assert "testbad" in kernel.plugin_failures[0]
    assert "pycrio-test-bad 0.0.1" in kernel.plugin_failures[0]
    conditions = kernel.hook.pycrio_status_conditions(kernel=kernel)
    assert [c.type for extra in conditions for c in extra] == ["TestGoodReady"]
    # the good plugin answers a CRI call before the core does
    with started(kernel) as failures:
        assert failures == []
        resp = kernel.hook.cri_list_images(
            request=api_pb2.ListImagesRequest(), ctx=CallContext("ListImages")
        )
        assert isinstance(resp, api_pb2.ListImagesResponse)
    assert (Path(cfg.root) / "storage").is_dir()  # the core's state went to the temporary root


def test_plugin_whose_constructor_raises_is_reported_not_fatal(cfg: Config) -> None:
    class Explodes:
        def __init__(self) -> None:
            raise OSError("no such device")

        @hookimpl
        def pycrio_startup(self, kernel):
            raise AssertionError("never registered")

    found = [Found("pycrio.plugins", "explodes", "x:X", "explodes-dist", "2.0", obj=Explodes)]
    kernel = build_kernel(cfg, lambda kernel: [], found=found)
    assert kernel.plugin_failures == [
        "plugin 'explodes' from explodes-dist 2.0: OSError: no such device"
    ]
    assert found[0].status == "error: OSError: no such device"
    assert not kernel.pm.has_plugin("pycrio.plugins:explodes")


def test_status_survives_a_plugin_whose_conditions_raise(
    cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    class Faulty:
        @hookimpl
        def pycrio_status_conditions(self, kernel):
            raise KeyError("oops")

    class Fine:
        @hookimpl
        def pycrio_status_conditions(self, kernel):
            return [api_pb2.RuntimeCondition(type="FineReady", status=True)]

    from pycrio.cri.runtime_info import RuntimeInfo

    kernel = build_kernel(cfg, lambda kernel: [RuntimeInfo(kernel)], found=[])
    kernel.pm.register(Faulty(), name="faulty")
    kernel.pm.register(Fine(), name="fine")
    with caplog.at_level(logging.ERROR, logger="pycrio.kernel"):
        resp = kernel.hook.cri_status(request=api_pb2.StatusRequest(), ctx=CallContext("Status"))
    by_type = {c.type: c for c in resp.status.conditions}
    assert by_type["FineReady"].status
    assert not by_type["PluginConditions"].status
    assert (
        "plugin 'faulty' failed in pycrio_status_conditions" in by_type["PluginConditions"].message
    )
    assert "plugin 'faulty' failed in pycrio_status_conditions: KeyError" in caplog.text
    assert {"RuntimeReady", "NetworkReady", "PluginsLoaded"} <= set(by_type)


def test_required_broken_driver_refuses_with_driver_distribution_and_error(
    with_plugins: None, cfg: Config
) -> None:
    cfg.data["network"]["driver"] = "testbroken"
    with pytest.raises(DriverLoadError) as err:
        build_kernel(cfg, core_plugins)
    msg = str(err.value)
    assert "network driver" in msg and "'testbroken'" in msg
    assert "pycrio-test-bad 0.0.1" in msg
    assert "RuntimeError: pycrio-test-bad is broken on purpose" in msg


def test_configured_driver_is_instantiated_with_its_context(
    with_plugins: None, cfg: Config
) -> None:
    cfg.data["network"]["driver"] = "testnet"
    cfg.data["plugins"] = {"testnet": {"mtu": 1400}}
    kernel = build_kernel(cfg, core_plugins)
    driver = kernel.network_driver
    assert isinstance(driver, NetworkDriver)
    assert driver.ctx.options == {"mtu": 1400}
    assert driver.ctx.state_dir == f"{cfg.root}/drivers/testnet"
    assert driver.ready() == (True, "TestNetworkReady", "options: ['mtu']")
    assert kernel.runtime_driver("runc") is not None  # pycrio-runtime-runc is installed
    kernel.close()


def test_driver_that_is_not_a_driver_is_refused(with_plugins: None, cfg: Config) -> None:
    cfg.data["network"]["driver"] = "testnet"
    found = discover()
    for f in found:
        if f.name == "testnet":
            f.obj, f.state = object, "loaded"
    with pytest.raises(DriverLoadError, match="is not a subclass of .*NetworkDriver"):
        build_kernel(cfg, core_plugins, found=found)


def test_plugin_with_unknown_hook_is_reported(cfg: Config) -> None:
    class Typo:
        @hookimpl
        def cri_run_pod_sandbx(self, request, ctx):  # typo: no such hook
            return None

    found = [Found("pycrio.plugins", "typo", "x:Typo", "typo-dist", "1", obj=Typo)]
    kernel = build_kernel(cfg, core_plugins, found=found)
    assert kernel.plugin_failures and "cri_run_pod_sandbx" in kernel.plugin_failures[0]
    assert not kernel.pm.has_plugin("pycrio.plugins:typo")


def test_call_each_isolates_a_failing_plugin(cfg: Config) -> None:
    calls = []

    class Boom:
        @hookimpl
        def pycrio_startup(self, kernel):
            raise ValueError("boom")

    class Fine:
        @hookimpl
        def pycrio_startup(self, kernel):
            calls.append(kernel)

    kernel = build_kernel(cfg, lambda kernel: [], found=[])
    kernel.pm.register(Fine(), name="fine")
    kernel.pm.register(Boom(), name="boom")
    failures = call_each(kernel, "pycrio_startup", kernel=kernel)
    assert calls == [kernel]
    assert [f.message for f in failures] == [
        "plugin 'boom' failed in pycrio_startup: ValueError: boom"
    ]
    assert not failures[0].core


def test_a_wrapper_plugin_sees_and_changes_a_call(cfg: Config) -> None:
    class Wrap:
        @hookimpl(wrapper=True)
        def cri_version(self, request, ctx):
            response = yield
            response.runtime_version += "+wrapped"
            return response

    kernel = build_kernel(cfg, core_plugins, found=[])
    kernel.pm.register(Wrap(), name="wrap")
    resp = kernel.hook.cri_version(request=api_pb2.VersionRequest(), ctx=CallContext("Version"))
    assert resp.runtime_name == "pycrio"
    assert resp.runtime_version.endswith("+wrapped")
    assert sys.modules["pycrio"]


# --- drivers loaded when named, disabled plugins, requirements, declining ----------


def test_only_the_drivers_the_configuration_names_are_imported(
    with_plugins: None, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "pycrio_test_driver", raising=False)
    kernel = build_kernel(cfg, lambda kernel: [])
    found = by_name(kernel.found)
    assert "pycrio_test_driver" not in sys.modules
    assert found[("pycrio.network", "testnet")].status == (
        "not loaded (the configuration does not name it)"
    )
    # the broken network driver is not named either: no error, no import attempt
    assert found[("pycrio.network", "testbroken")].state == "found"
    assert found[("pycrio.runtime", "runc")].loaded
    kernel.close()

    cfg.data["network"]["driver"] = "testnet"
    kernel = build_kernel(cfg, lambda kernel: [])
    assert "pycrio_test_driver" in sys.modules and kernel.network_driver is not None
    kernel.close()


def test_disabled_plugins_are_not_loaded_and_not_failures(
    with_plugins: None, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg.data["disabled_plugins"] = ["testgood", "testbad", "nosuchplugin"]
    kernel = build_kernel(cfg, lambda kernel: [])
    found = by_name(kernel.found)
    for name in ("testgood", "testbad"):
        assert found[("pycrio.plugins", name)].status == "disabled (disabled_plugins)"
        assert not kernel.pm.has_plugin(f"pycrio.plugins:{name}")
    assert kernel.plugin_failures == []  # the broken one was not even imported
    assert kernel.pm.has_plugin("pycrio.plugins:specmarker")
    kernel.close()


class Declines:
    @staticmethod
    def decline(config):
        return "no /dev/kvm on this node"

    @hookimpl
    def pycrio_startup(self, kernel):
        raise AssertionError("a declining plugin is never registered")


class Base:
    @hookimpl
    def pycrio_startup(self, kernel):
        pass


class NeedsMissing(Base):
    requires = ("nri",)


class NeedsNeedsMissing(Base):
    requires = ("needs_missing",)


class NeedsTestnet(Base):
    requires = ("pycrio.network:testnet",)


class NeedsFine(Base):
    requires = ("fine",)


class BadRequires(Base):
    requires = "fine"


def _plugin(name: str, cls: type) -> Found:
    return Found("pycrio.plugins", name, f"x:{cls.__name__}", f"{name}-dist", "1", obj=cls)


def test_declining_and_requirements_are_shown_and_enforced(with_plugins: None, cfg: Config) -> None:
    found = [
        *(f for f in discover() if f.group != "pycrio.plugins"),
        _plugin("declines", Declines),
        _plugin("fine", Base),
        _plugin("needs_missing", NeedsMissing),
        _plugin("needs_needs_missing", NeedsNeedsMissing),
        _plugin("needs_testnet", NeedsTestnet),
        _plugin("needs_fine", NeedsFine),
        _plugin("bad_requires", BadRequires),
    ]
    kernel = build_kernel(cfg, lambda kernel: [], found)
    status = {f.name: f.status for f in found if f.group == "pycrio.plugins"}
    assert status == {
        "declines": "declined: no /dev/kvm on this node",
        "fine": "loaded",
        "needs_missing": "requirement not met: requires nri: plugin 'nri' is not installed",
        "needs_needs_missing": "requirement not met: requires needs_missing: plugin"
        " 'needs_missing' is not loaded (requirement not met: requires nri: plugin 'nri' is"
        " not installed)",
        "needs_testnet": "requirement not met: requires pycrio.network:testnet: the"
        " configuration does not use the pycrio.network driver 'testnet'",
        "needs_fine": "loaded",
        "bad_requires": "error: TypeError: requires must be a sequence of names",
    }
    registered = {n for n, _ in kernel.pm.list_name_plugin()}
    assert registered == {"pycrio.plugins:fine", "pycrio.plugins:needs_fine"}
    # a declining plugin is not a failure; an unmet requirement and a bad plugin are
    assert sorted(m.split(" from ")[0] for m in kernel.plugin_failures) == [
        "plugin 'bad_requires'",
        "plugin 'needs_missing'",
        "plugin 'needs_needs_missing'",
        "plugin 'needs_testnet'",
    ]
    kernel.close()

    cfg.data["network"]["driver"] = "testnet"
    for f in found:
        if f.group == "pycrio.plugins":
            f.state, f.reason, f.error = "loaded", "", ""
    kernel = build_kernel(cfg, lambda kernel: [], found)
    assert by_name(found)[("pycrio.plugins", "needs_testnet")].status == "loaded"
    kernel.close()


def test_pycrio_plugins_shows_why(
    with_plugins: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pycrio.cli import main

    conf = tmp_path / "pycrio.conf"
    conf.write_text('disabled_plugins = ["specmarker"]\n[network]\ndriver = "testnet"\n')
    (tmp_path / "conf.d").mkdir()
    args = ["--config", str(conf), "--config-dir", str(tmp_path / "conf.d")]
    args += ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    sigpipe = signal.getsignal(signal.SIGPIPE)
    try:
        assert main(["plugins", *args]) == 0
    finally:
        signal.signal(signal.SIGPIPE, sigpipe)  # main() restores the default for `| head`
    out = capsys.readouterr().out
    lines = {
        tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith("pycrio.")
    }
    assert lines[("pycrio.plugins", "specmarker")].endswith("disabled (disabled_plugins)")
    assert lines[("pycrio.plugins", "testgood")].endswith("loaded")
    assert (
        "error: RuntimeError: pycrio-test-bad is broken on purpose"
        in lines[("pycrio.plugins", "testbad")]
    )
    assert lines[("pycrio.network", "testnet")].endswith("loaded")
    assert lines[("pycrio.network", "cni")].endswith(
        "not loaded (the configuration does not name it)"
    )
    assert "network driver: testnet (pycrio.network): loaded" in out
    assert not (tmp_path / "root").exists()  # nothing was started
