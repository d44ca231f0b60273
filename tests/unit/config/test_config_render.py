from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pycrio.config import defaults, load
from pycrio.config.load import discover_declarations
from pycrio.config.render import annotated_defaults, plugin_reference, reference_table, to_toml
from pycrio.config.schema import HANDLER_OPTIONS, OPTIONS, PLUGINS, RUNTIMES

DOCS = Path(__file__).parents[3] / "docs" / "configuration.md"


def test_effective_config_round_trips(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    conf = tmp_path / "c.conf"
    conf.write_text(
        "[runtime]\nlog_level = 'debug'\n[runtime.runtimes.crun]\ndriver = 'crun'\n"
        "[plugins.cgroupfs]\ndefault_parent = '/x'\n[plugins.oci_hooks]\ndirs = ['/h']\n"
    )
    cfg = load(str(conf), str(d))
    printed = tmp_path / "printed.conf"
    printed.write_text(to_toml(cfg))
    again = load(str(printed), str(d))
    assert again.data == cfg.data


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-", max_size=20).map(lambda s: "/" + s)


@settings(max_examples=50, deadline=None)
@given(
    handlers=st.dictionaries(
        names, st.fixed_dictionaries({"driver": names, "runtime_path": paths})
    ),
    level=st.sampled_from(["trace", "debug", "info", "warn", "error"]),
    dirs=st.lists(paths, max_size=3),
)
def test_round_trip_property(tmp_path_factory, handlers, level, dirs) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    handlers = {"runc": {"driver": "runc"}, **handlers}
    src = {"runtime": {"log_level": level, "runtimes": handlers}, "network": {"plugin_dirs": dirs}}
    import tomli_w

    (tmp / "a.conf").write_text(tomli_w.dumps(src))
    (tmp / "d").mkdir()
    cfg = load(str(tmp / "a.conf"), str(tmp / "d"))
    (tmp / "b.conf").write_text(to_toml(cfg))
    assert load(str(tmp / "b.conf"), str(tmp / "d")).data == cfg.data


def test_annotated_defaults_load_back_and_comment_every_option(tmp_path: Path) -> None:
    text = annotated_defaults(defaults())
    data = tomllib.loads(text)
    data.setdefault("plugins", {})
    assert data == defaults().data | {"plugins": {}}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            assert lines[i - 1].startswith("# "), f"option without a comment: {line}"
    keys = {m.group(1) for m in re.finditer(r"^([a-z_]+) = ", text, re.M)}
    assert keys == {o.key for o in OPTIONS if o.type not in (RUNTIMES, PLUGINS)} | {
        o.key for o in HANDLER_OPTIONS
    }


def test_configuration_reference_is_in_sync_with_schema() -> None:
    """docs/configuration.md carries the table generated from the schema."""
    text = DOCS.read_text()
    start, end = "<!-- BEGIN OPTIONS -->\n", "<!-- END OPTIONS -->"
    assert start in text and end in text
    documented = text.split(start, 1)[1].split(end, 1)[0]
    assert documented == reference_table(), (
        "docs/configuration.md is out of date: regenerate the table with "
        "`.venv/bin/python -m pycrio.config.render`"
    )


def test_plugin_options_reference_is_in_sync_with_their_declarations() -> None:
    """docs/configuration.md lists every installed plugin's declared options."""
    text = DOCS.read_text()
    start, end = "<!-- BEGIN PLUGIN OPTIONS -->\n", "<!-- END PLUGIN OPTIONS -->"
    documented = text.split(start, 1)[1].split(end, 1)[0]
    generated = plugin_reference(discover_declarations())
    assert "### `runc` (pycrio-runtime-runc, runtime)" in generated
    assert "| `runtime.hooks_dir` |" in generated
    assert documented == generated, (
        "docs/configuration.md is out of date: regenerate it with "
        "`.venv/bin/python -m pycrio.config.render plugins`"
    )


def test_annotated_defaults_include_declared_options_with_their_help() -> None:
    decl = discover_declarations()
    text = annotated_defaults(defaults(decl))
    assert tomllib.loads(text) == defaults(decl).data
    assert "[plugins.cgroupfs]" in text and "[plugins.oci_hooks]" in text
    assert "# dirs = (not set)" in text
    runc = text.split("[runtime.runtimes.runc]", 1)[1].split("\n[", 1)[0]
    assert "# systemd_cgroup = (not set)" in runc
    assert "# Seconds a container create through conmon may take. (declared by runc)" in runc
    hooks = text.split("\nhooks_dir = ", 1)[0].rsplit("\n", 1)[1]
    assert hooks.startswith("# Hooks directories") and "(declared by oci_hooks)" in hooks
    for opt in decl.options:
        assert opt.doc.split("\n")[0][:40] in text.replace("\n# ", " "), opt.dotted
