"""The plugin: configuration, reload, and injection through the pluggy hook."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

from pycrio.kernel.hookspecs import PROJECT, ExtensionSpecs
from pycrio_oci_hooks.directories import DEFAULT_DIRS
from pycrio_oci_hooks.plugin import OCIHooksConfigError, OCIHooksPlugin, configured_dirs


def kernel(data: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(data=data))


def new_spec(args=("/bin/sh",), annotations=None) -> dict[str, Any]:
    return {"process": {"args": list(args)}, "annotations": dict(annotations or {})}


CONTAINER = SimpleNamespace(id="c1", annotations={}, mounts=[])
POD = SimpleNamespace(id="p1", annotations={}, run_dir="/run/p1", shm_path="/run/p1/shm")


@pytest.fixture
def pm() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(ExtensionSpecs)
    return manager


def adjust(pm: pluggy.PluginManager, spec: dict[str, Any]) -> dict[str, Any]:
    pm.hook.pycrio_adjust_container_spec(spec=spec, container=CONTAINER, sandbox=POD, ctx=None)
    return spec


def test_configured_dirs_precedence():
    assert configured_dirs(SimpleNamespace(data={})) == list(DEFAULT_DIRS)
    assert configured_dirs({"runtime": {"hooks_dir": "/opt/hooks"}}) == ["/opt/hooks"]
    assert configured_dirs({"runtime": {"hooks_dir": ["/a", "/b"]}}) == ["/a", "/b"]
    both = {"runtime": {"hooks_dir": ["/a"]}, "plugins": {"oci_hooks": {"dirs": ["/p"]}}}
    assert configured_dirs(both) == ["/p"]
    assert configured_dirs({"plugins": {"oci_hooks": {"dirs": []}}}) == []
    assert configured_dirs({"runtime": None, "plugins": "junk"}) == list(DEFAULT_DIRS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"plugins": {"oci_hooks": {"dirs": [1]}}}, r"\[plugins.oci_hooks\] dirs must be a list"),
        ({"plugins": {"oci_hooks": {"dirs": ["rel"]}}}, r"'rel' is not an absolute path"),
        ({"runtime": {"hooks_dir": 3}}, r"\[runtime\] hooks_dir must be a list"),
    ],
)
def test_configured_dirs_errors(data, message):
    with pytest.raises(OCIHooksConfigError, match=message):
        configured_dirs(data)


def test_unknown_option_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="pycrio.oci_hooks"):
        configured_dirs({"plugins": {"oci_hooks": {"dir": ["/x"]}}})
    assert "unknown option 'dir'" in caplog.text


def test_startup_reads_configuration_and_injects(pm, tmp_path, hook_doc, write_hook, hook_bin):
    d = tmp_path / "hooks.d"
    write_hook(d, "10-a.json", hook_doc(stages=["createRuntime", "poststop"]))
    write_hook(d, "20-b.json", hook_doc(when={"commands": ["^/sbin/init$"]}))
    plugin = OCIHooksPlugin()
    pm.register(plugin)
    pm.hook.pycrio_startup(kernel=kernel({"plugins": {"oci_hooks": {"dirs": [str(d)]}}}))
    assert plugin.directories.dirs == (str(d),)
    spec = adjust(pm, new_spec())
    assert spec["hooks"] == {
        "createRuntime": [{"path": hook_bin}],
        "poststop": [{"path": hook_bin}],
    }
    init = adjust(pm, new_spec(args=["/sbin/init"]))
    assert init["hooks"]["prestart"] == [{"path": hook_bin}]


def test_startup_with_bad_configuration_fails_and_injects_nothing(pm, tmp_path, hook_doc):
    plugin = OCIHooksPlugin()
    pm.register(plugin)
    with pytest.raises(OCIHooksConfigError):
        pm.hook.pycrio_startup(kernel=kernel({"plugins": {"oci_hooks": {"dirs": "x"}}}))
    assert plugin.directories.dirs == ()
    assert "hooks" not in adjust(pm, new_spec())


def test_reload_switches_directories_and_keeps_them_on_error(
    pm, tmp_path, hook_doc, write_hook, caplog
):
    one, two = tmp_path / "one", tmp_path / "two"
    write_hook(one, "a.json", hook_doc(stages=["prestart"]))
    write_hook(two, "a.json", hook_doc(stages=["poststop"]))
    plugin = OCIHooksPlugin([str(one)])
    pm.register(plugin)
    assert set(adjust(pm, new_spec())["hooks"]) == {"prestart"}
    new = SimpleNamespace(data={"plugins": {"oci_hooks": {"dirs": [str(two)]}}})
    pm.hook.pycrio_config_reload(old=None, new=new, changed=["plugins.oci_hooks.dirs"])
    assert set(adjust(pm, new_spec())["hooks"]) == {"poststop"}
    bad = SimpleNamespace(data={"plugins": {"oci_hooks": {"dirs": ["relative"]}}})
    with caplog.at_level(logging.ERROR, logger="pycrio.oci_hooks"):
        pm.hook.pycrio_config_reload(old=new, new=bad, changed=["plugins.oci_hooks.dirs"])
    assert "keeping the running one" in caplog.text
    assert plugin.directories.dirs == (str(two),)


def test_same_instance_sees_new_changed_and_removed_files(pm, tmp_path, hook_doc, write_hook):
    d = tmp_path / "hooks.d"
    d.mkdir()
    plugin = OCIHooksPlugin([str(d)])
    pm.register(plugin)
    assert "hooks" not in adjust(pm, new_spec())
    path = write_hook(d, "a.json", hook_doc(stages=["prestart"]))
    assert set(adjust(pm, new_spec())["hooks"]) == {"prestart"}
    write_hook(d, "a.json", hook_doc(stages=["startContainer"], hook={"path": "/bin/true"}))
    assert adjust(pm, new_spec())["hooks"] == {"startContainer": [{"path": "/bin/true"}]}
    os.unlink(path)
    assert "hooks" not in adjust(pm, new_spec())


def test_hook_with_missing_binary_is_skipped_and_warned_once(
    pm, tmp_path, hook_doc, write_hook, hook_bin, caplog
):
    d = tmp_path / "hooks.d"
    missing = str(tmp_path / "not-installed-yet")
    write_hook(d, "a.json", hook_doc(hook={"path": missing}))
    write_hook(d, "b.json", hook_doc())
    pm.register(OCIHooksPlugin([str(d)]))
    with caplog.at_level(logging.WARNING, logger="pycrio.oci_hooks"):
        assert adjust(pm, new_spec())["hooks"] == {"prestart": [{"path": hook_bin}]}
        adjust(pm, new_spec())
    warnings = [r.getMessage() for r in caplog.records if "not injected" in r.getMessage()]
    assert len(warnings) == 1
    assert "a.json" in warnings[0] and "no such file" in warnings[0]
    os.symlink(hook_bin, missing)  # installed later: used without a restart
    assert adjust(pm, new_spec())["hooks"]["prestart"] == [{"path": missing}, {"path": hook_bin}]


def test_existing_spec_hooks_are_preserved(pm, tmp_path, hook_doc, write_hook, hook_bin):
    d = tmp_path / "hooks.d"
    write_hook(d, "a.json", hook_doc())
    pm.register(OCIHooksPlugin([str(d)]))
    spec = new_spec()
    spec["hooks"] = {"prestart": [{"path": "/usr/bin/from-core", "args": ["x"]}]}
    adjust(pm, spec)
    assert spec["hooks"]["prestart"] == [
        {"path": "/usr/bin/from-core", "args": ["x"]},
        {"path": hook_bin},
    ]


def test_annotations_from_the_pod_select_hooks(pm, tmp_path, hook_doc, write_hook, hook_bin):
    d = tmp_path / "hooks.d"
    write_hook(d, "gpu.json", hook_doc(when={"annotations": {r"^example\.com/gpu$": "^true$"}}))
    pm.register(OCIHooksPlugin([str(d)]))
    assert "hooks" not in adjust(pm, new_spec())
    pod = SimpleNamespace(annotations={"example.com/gpu": "true"})
    spec = new_spec()
    pm.hook.pycrio_adjust_container_spec(spec=spec, container=CONTAINER, sandbox=pod, ctx=None)
    assert spec["hooks"] == {"prestart": [{"path": hook_bin}]}
