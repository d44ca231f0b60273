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
