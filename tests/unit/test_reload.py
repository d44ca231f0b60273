from __future__ import annotations

from pycrio.config import defaults
from pycrio.daemon import changed_keys, reloaded_config


def test_reload_applies_reloadable_keys_and_defers_the_rest() -> None:
    old = defaults()
    new = defaults()
    new.data["runtime"]["log_level"] = "debug"
    new.data["api"]["listen"] = "/run/other.sock"
    new.data["plugins"] = {"nri": {"enabled": True}}
    assert changed_keys(old, new) == ["api.listen", "plugins.nri.enabled", "runtime.log_level"]
    effective, applied, pending = reloaded_config(old, new)
    assert applied == ["plugins.nri.enabled", "runtime.log_level"]
    assert pending == ["api.listen"]
    assert effective.log_level == "debug"
    assert effective.listen == old.listen
    assert effective.plugin_table("nri") == {"enabled": True}
    assert old.log_level == "info"


def test_reload_without_changes() -> None:
    effective, applied, pending = reloaded_config(defaults(), defaults())
    assert (applied, pending) == ([], [])
    assert effective.data == defaults().data


def test_declared_plugin_options_reload_only_when_declared_reloadable(tmp_path) -> None:
    from pycrio.config import load

    (tmp_path / "d").mkdir()
    conf = tmp_path / "c.conf"
    conf.write_text("[plugins.cgroupfs]\nremove_timeout = 1\n[plugins.oci_hooks]\ndirs = ['/a']\n")
    old = load(str(conf), str(tmp_path / "d"))
    conf.write_text(
        "[plugins.cgroupfs]\nremove_timeout = 2\n[plugins.oci_hooks]\ndirs = ['/b']\n"
        "[runtime]\nhooks_dir = ['/h']\n"
    )
    new = load(str(conf), str(tmp_path / "d"))
    effective, applied, pending = reloaded_config(old, new)
    assert applied == ["plugins.oci_hooks.dirs", "runtime.hooks_dir"]
    assert pending == ["plugins.cgroupfs.remove_timeout"]  # the driver read it at start
    assert effective.plugin_table("cgroupfs")["remove_timeout"] == 1
    assert effective.plugin_table("oci_hooks")["dirs"] == ["/b"]
    assert effective.get("runtime.hooks_dir") == ["/h"]
