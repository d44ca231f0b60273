"""Print a configuration as TOML, optionally annotated for operators.

The effective configuration is printed as plain TOML so that it loads back to
the same configuration (`pycrio config > pycrio.conf` is a valid way to pin
what is running). The annotated defaults double as a commented template.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from pycrio.config.schema import HANDLER_OPTIONS, PLUGINS, RUNTIMES, TABLES, Config, options_of


def to_toml(cfg: Config) -> str:
    return tomli_w.dumps(cfg.data)


def _value(key: str, value: Any) -> str:
    return tomli_w.dumps({key: value}).rstrip("\n")


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in text.splitlines()]


def annotated_defaults(cfg: Config) -> str:
    """The defaults with a comment per option, grouped by table like crio.conf."""
    lines: list[str] = ["# pycrio configuration: embedded defaults.", ""]
    for table in TABLES:
        opts = options_of(table)
        if table == "plugins":
            lines += [*_comment(opts[0].doc), "# [plugins.example]", ""]
            continue
        if table:
            lines += [f"[{table}]", ""]
        for opt in opts:
            if opt.type in (RUNTIMES, PLUGINS):
                continue
            value = cfg.data[opt.table][opt.key] if opt.table else cfg.data[opt.key]
            lines += [*_comment(opt.doc), _value(opt.key, value), ""]
        if table == "runtime":
            lines += _handlers(cfg)
    return "\n".join(lines).rstrip("\n") + "\n"


def _handlers(cfg: Config) -> list[str]:
    lines = _comment(next(o for o in options_of("runtime") if o.type == RUNTIMES).doc) + [""]
    for handler, table in cfg.runtimes.items():
        lines += [f"[runtime.runtimes.{handler}]", ""]
        for opt in HANDLER_OPTIONS:
            lines += [*_comment(opt.doc), _value(opt.key, table[opt.key]), ""]
    return lines


def _md_default(value: Any) -> str:
    return "`" + _value("x", value).split(" = ", 1)[1].replace("\n", " ") + "`"


def reference_table() -> str:
    """The option table of docs/configuration.md, generated from the schema."""
    from pycrio.config.schema import OPTIONS

    rows = ["| option | type | default | reload | meaning |", "| --- | --- | --- | --- | --- |"]
    for opt in (*OPTIONS, *HANDLER_OPTIONS):
        if opt.type in (RUNTIMES, PLUGINS):
            default = "see below"
        else:
            default = _md_default(opt.default)
        reload = "SIGHUP" if opt.reloadable else "restart"
        rows.append(f"| `{opt.dotted}` | {opt.type} | {default} | {reload} | {opt.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(reference_table(), end="")
