"""Print a configuration as TOML, optionally annotated for operators.

The effective configuration is printed as plain TOML so that it loads back to
the same configuration (`pycrio config > pycrio.conf` is a valid way to pin
what is running). The annotated defaults double as a commented template.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from pycrio.config.declared import Declarations
from pycrio.config.schema import (
    HANDLER_OPTIONS,
    HANDLER_TABLE,
    PLUGINS,
    RUNTIMES,
    TABLES,
    Config,
    Option,
    options_of,
)


def to_toml(cfg: Config) -> str:
    return tomli_w.dumps(cfg.data)


def _value(key: str, value: Any) -> str:
    return tomli_w.dumps({key: value}).rstrip("\n")


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in text.splitlines()]


def _option_lines(opt: Option, value: Any) -> list[str]:
    doc = opt.doc + (f" (declared by {opt.owner})" if opt.owner else "")
    if value is None:
        return [*_comment(doc), f"# {opt.key} = (not set)", ""]
    return [*_comment(doc), _value(opt.key, value), ""]


def annotated_defaults(cfg: Config) -> str:
    """The defaults with a comment per option, grouped by table like crio.conf.

    Options that plugins and drivers declared (``cfg.declared``) appear in
    their tables: core tables, each handler table of their driver, and one
    ``[plugins.<name>]`` table per plugin.
    """
    declared = cfg.declared
    lines: list[str] = ["# pycrio configuration: embedded defaults.", ""]
    for table in TABLES:
        opts = options_of(table)
        if table == "plugins":
            lines += _plugin_tables(cfg, opts[0].doc)
            continue
        if table:
            lines += [f"[{table}]", ""]
        for opt in [*opts, *(o for o in declared if o.table == table)]:
            if opt.type in (RUNTIMES, PLUGINS):
                continue
            node = cfg.data[opt.table] if opt.table else cfg.data
            lines += _option_lines(opt, node.get(opt.key))
        if table == "runtime":
            lines += _handlers(cfg)
    return "\n".join(lines).rstrip("\n") + "\n"


def _handlers(cfg: Config) -> list[str]:
    lines = _comment(next(o for o in options_of("runtime") if o.type == RUNTIMES).doc) + [""]
    for handler, table in cfg.runtimes.items():
        lines += [f"[runtime.runtimes.{handler}]", ""]
        driver_opts = [
            o for o in cfg.declared if o.table == HANDLER_TABLE and o.owner == table["driver"]
        ]
        for opt in (*HANDLER_OPTIONS, *driver_opts):
            lines += _option_lines(opt, table.get(opt.key))
    # drivers no default handler uses: their options, commented out, as an example
    used = {table["driver"] for table in cfg.runtimes.values()}
    others = sorted(
        {o.owner for o in cfg.declared if o.table == HANDLER_TABLE and o.owner not in used}
    )
    for owner in others:
        lines += [f'# [runtime.runtimes.<handler>] with driver = "{owner}" may also set:', ""]
        for opt in (o for o in cfg.declared if o.table == HANDLER_TABLE and o.owner == owner):
            lines += [
                line if line.startswith("#") else f"# {line}"
                for line in _option_lines(opt, opt.default)
                if line
            ]
            lines.append("")
    return lines


def _plugin_tables(cfg: Config, doc: str) -> list[str]:
    lines = [*_comment(doc), ""]
    owners = sorted({o.owner for o in cfg.declared if o.table == f"plugins.{o.owner}"})
    if not owners:
        return [*lines, "# [plugins.example]", ""]
    for owner in owners:
        lines += [f"[plugins.{owner}]", ""]
        table = cfg.plugin_table(owner)
        for opt in (o for o in cfg.declared if o.table == f"plugins.{owner}"):
            lines += _option_lines(opt, table.get(opt.key))
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _value("x", value).split(" = ", 1)[1]


def _md_default(value: Any) -> str:
    return f"`{_inline(value)}`"


def _row(opt: Option, dotted: str) -> str:
    if opt.type in (RUNTIMES, PLUGINS):
        default = "see below"
    elif opt.default is None:
        default = "not set"
    else:
        default = _md_default(opt.default)
    reload = "SIGHUP" if opt.reloadable else "restart"
    return f"| `{dotted}` | {opt.type} | {default} | {reload} | {opt.doc} |"


_HEADER = ["| option | type | default | reload | meaning |", "| --- | --- | --- | --- | --- |"]


def reference_table() -> str:
    """The option table of docs/configuration.md, generated from the schema."""
    from pycrio.config.schema import OPTIONS

    rows = [*_HEADER, *(_row(opt, opt.dotted) for opt in (*OPTIONS, *HANDLER_OPTIONS))]
    return "\n".join(rows) + "\n"


def plugin_reference(declarations: Declarations) -> str:
    """The per-plugin option tables of docs/configuration.md, from their declarations."""
    out: list[str] = []
    for name, owner in sorted(declarations.owners.items()):
        opts = declarations.of_owner(name)
        if not opts:
            continue
        where = ", ".join(g.removeprefix("pycrio.") for g in owner.groups)
        out += [f"### `{name}` ({owner.distribution}, {where})", "", *_HEADER]
        out += [_row(o, o.dotted) for o in opts]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["plugins"]:
        from pycrio.kernel.options import declarations

        print(plugin_reference(declarations()), end="")
    else:
        print(reference_table(), end="")
