"""Read, validate and merge the configuration file, its drop-ins and flags.

Each file is validated on its own before merging so an error names the file
that holds the mistake; later sources override earlier ones key by key, the
way CRI-O merges crio.conf.d drop-ins. Plugins' and drivers' options are
validated the same way, against what they declared
(:mod:`pycrio.config.declared`); a table of a plugin that is not installed
is an error naming it.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

from pycrio.config.declared import PLUGIN_KEYS, Declarations
from pycrio.config.schema import (
    BOOL,
    DURATION,
    HANDLER_OPTIONS,
    HANDLER_TABLE,
    INT,
    NUMBER,
    OPTIONS,
    PLUGINS,
    POD_METRIC_GROUPS,
    RUNTIMES,
    SECONDS,
    STR,
    STR_LIST,
    STR_OR_LIST,
    TABLES,
    Config,
    Option,
    options_of,
    parse_duration,
)

DEFAULT_CONFIG = "/etc/pycrio/pycrio.conf"
DEFAULT_CONFIG_DIR = "/etc/pycrio/pycrio.conf.d"


class ConfigError(Exception):
    """A configuration problem, phrased for the operator who has to fix it."""


def discover_declarations() -> Declarations:
    """The options the installed plugins and drivers declare (imports no driver)."""
    from pycrio.kernel.options import declarations

    return declarations()


def defaults(declarations: Declarations | None = None) -> Config:
    """The embedded defaults: the core's, plus the declared ones when given."""
    data: dict[str, Any] = {t: {} for t in TABLES if t}
    for opt in OPTIONS:
        if opt.type == PLUGINS:
            continue
        target = data[opt.table] if opt.table else data
        target[opt.key] = copy.deepcopy(opt.default)
    cfg = Config(data=data, sources=["<embedded defaults>"])
    if declarations is not None:
        cfg.declared = tuple(declarations.options)
        _fill_declared(cfg.data, declarations)
        _complete_handlers(cfg.data, declarations)
    return cfg


def _fill_declared(data: dict[str, Any], decl: Declarations) -> None:
    """Declared defaults of core tables and plugin tables, where the operator set none."""
    for opt in decl.options:
        if opt.table == HANDLER_TABLE:
            continue
        node = data
        for part in opt.table.split(".") if opt.table else []:
            node = node.setdefault(part, {})  # a plugin's table exists even with no default
        if opt.default is not None:
            node.setdefault(opt.key, copy.deepcopy(opt.default))


def _type_ok(opt_type: str, value: Any) -> bool:
    if opt_type == STR:
        return isinstance(value, str)
    if opt_type == DURATION:
        if not isinstance(value, str):
            return False
        try:
            parse_duration(value)
        except ValueError:
            return False
        return True
    if opt_type == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if opt_type == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if opt_type == SECONDS:
        return _type_ok(NUMBER, value) or _type_ok(DURATION, value)
    if opt_type == STR_OR_LIST:
        return isinstance(value, str) or _type_ok(STR_LIST, value)
    if opt_type == BOOL:
        return isinstance(value, bool)
    if opt_type == STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if opt_type in (RUNTIMES, PLUGINS):
        return isinstance(value, dict)
    raise AssertionError(f"unknown option type {opt_type}")


def _describe(value: Any) -> str:
    kind = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, dict) else kind


#: The integers the daemon can use: what grpc takes (a C int), a port, a
#: rate per million, a timeout that fits the platform's time_t (issue 17: the
#: config fuzzer found each of these accepted, then failing with a traceback).
INT_RANGES: dict[str, tuple[int, int]] = {
    "api.grpc_max_send_msg_size": (1, 2**31 - 1),
    "api.grpc_max_recv_msg_size": (1, 2**31 - 1),
    "api.grpc_workers": (1, 10_000),
    "api.shutdown_timeout": (0, 2**31 - 1),
    "metrics.metrics_port": (0, 65535),
    "tracing.tracing_sampling_rate_per_million": (0, 1_000_000),
}


def _check_value(source: str, dotted: str, opt_type: str, value: Any) -> None:
    """What the type alone does not say: ranges, and no NUL in a string."""
    bounds = INT_RANGES.get(dotted)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(
            f"{source}: key {dotted!r} must be an integer from {bounds[0]} to {bounds[1]}, "
            f"got {value}"
        )
    strings = [value] if opt_type == STR else value if opt_type == STR_LIST else []
    if any("\x00" in v for v in strings):
        raise ConfigError(f"{source}: key {dotted!r} must not contain a NUL character")


def _check_table(
    source: str,
    table: str,
    raw: dict[str, Any],
    opts: list[Option],
    decl: Declarations,
    missing_driver: str = "",
) -> None:
    known = {o.key: o for o in opts}
    for key, value in raw.items():
        dotted = f"{table}.{key}" if table else key
        opt = known.get(key)
        if opt is None:
            if dotted in PLUGIN_KEYS and PLUGIN_KEYS[dotted][0] not in decl.owners:
                plugin, dist = PLUGIN_KEYS[dotted]
                raise ConfigError(
                    f"{source}: key {dotted!r} is an option of the plugin {plugin!r}, which is"
                    f" not installed; install {dist} or remove the key"
                )
            if missing_driver:
                raise ConfigError(
                    f"{source}: key {dotted!r} is not a core handler option, and the driver"
                    f" {missing_driver!r} that would declare it is not installed (no entry"
                    f" point {missing_driver!r} in pycrio.runtime); install it or remove the key"
                )
            where = f"[{table}]" if table else "the top level"
            allowed = sorted(known) + ([f"[{t}]" for t in TABLES if t] if not table else [])
            raise ConfigError(
                f"{source}: unknown key {dotted!r}; allowed in {where}: " + ", ".join(allowed)
            )
        if not _type_ok(opt.type, value):
            raise ConfigError(
                f"{source}: key {dotted!r} must be {_article(opt.type)}, got {_describe(value)}"
            )
        _check_value(source, dotted, opt.type, value)
        if opt.choices and value not in opt.choices:
            raise ConfigError(
                f"{source}: key {dotted!r} must be one of {', '.join(opt.choices)}; got {value!r}"
            )
        if opt.type == RUNTIMES:
            for handler, table_raw in value.items():
                htable = f"runtime.runtimes.{handler}"
                if not isinstance(table_raw, dict):
                    raise ConfigError(
                        f"{source}: key {htable!r} must be a table, got {_describe(table_raw)}"
                    )
                _check_handler(source, htable, table_raw, decl)


def _article(opt_type: str) -> str:
    if opt_type == DURATION:
        return 'a duration string such as "30s", "1m30s" or "0s"'
    if opt_type == SECONDS:
        return 'a number of seconds or a duration string such as "90s"'
    return ("an " if opt_type[0] in "aeiou" else "a ") + opt_type


def _check_handler(source: str, table: str, raw: dict[str, Any], decl: Declarations) -> None:
    """A handler table: the core's keys and those of its driver.

    The driver may be named in another file (a drop-in), so a file that does
    not name it is checked against every runtime driver's keys here, and the
    merged table against its own driver's in :func:`_check_handlers`.
    """
    driver = raw.get("driver")
    if isinstance(driver, str) and driver:
        installed = driver in decl.owners
        opts = [*HANDLER_OPTIONS, *decl.handler_options(driver)]
        _check_table(source, table, raw, opts, decl, missing_driver="" if installed else driver)
    else:
        _check_table(source, table, raw, [*HANDLER_OPTIONS, *decl.all_handler_options()], decl)


def _check_handlers(data: dict[str, Any], decl: Declarations) -> None:
    for handler, table in data["runtime"]["runtimes"].items():
        _check_handler("configuration", f"runtime.runtimes.{handler}", table, decl)


def validate_file_data(
    source: str, raw: dict[str, Any], declarations: Declarations | None = None
) -> None:
    """Check one file's keys and types against the schema and the declared options."""
    decl = discover_declarations() if declarations is None else declarations
    for key, value in raw.items():
        if key == "plugins":
            _check_plugins(source, value, decl)
        elif key in TABLES and key:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key!r} must be a table, got {_describe(value)}")
            _check_table(source, key, value, options_of(key) + decl.table_options(key), decl)
        else:
            _check_table(source, "", {key: value}, options_of("") + decl.table_options(""), decl)


def _check_plugins(source: str, value: Any, decl: Declarations) -> None:
    """Each ``[plugins.<name>]`` against the options its installed owner declared."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: 'plugins' must be a table, got {_describe(value)}")
    for name, ptable in value.items():
        if not isinstance(ptable, dict):
            raise ConfigError(
                f"{source}: key 'plugins.{name}' must be a table, got {_describe(ptable)}"
            )
        owner = decl.owners.get(name)
        if owner is None:
            raise ConfigError(
                f"{source}: [plugins.{name}] configures {name!r}, but no plugin or driver of"
                f" that name is installed; install the distribution providing it (an entry"
                f" point {name!r} in pycrio.plugins, pycrio.runtime, pycrio.cgroup,"
                " pycrio.network or pycrio.hostport) or remove the table"
            )
        if name in decl.broken:
            raise ConfigError(
                f"{source}: [plugins.{name}] cannot be checked: {owner.describe()}:"
                f" {decl.broken[name]}"
            )
        opts = decl.table_options(f"plugins.{name}")
        if not opts and ptable:
            raise ConfigError(f"{source}: [plugins.{name}]: {owner.describe()} takes no options")
        _check_table(source, f"plugins.{name}", ptable, opts, decl)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    """Tables merge key by key; scalars and arrays replace."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


def _complete_handlers(data: dict[str, Any], decl: Declarations) -> None:
    """A handler table may name only some keys; fill the rest with defaults."""
    for handler, table in data["runtime"]["runtimes"].items():
        if "driver" not in table and table.get("runtime_type") == "vm":
            table["driver"] = "vm"  # CRI-O's runtime_type names the shim v2 driver
        for opt in HANDLER_OPTIONS:
            table.setdefault(opt.key, copy.deepcopy(opt.default))
        for opt in decl.handler_options(table["driver"]):
            if opt.default is not None:
                table.setdefault(opt.key, copy.deepcopy(opt.default))
        if not table["driver"]:
            raise ConfigError(f"runtime.runtimes.{handler}.driver must not be empty")


def _check_whole(cfg: Config) -> None:
    data = cfg.data
    default_rt = data["runtime"]["default_runtime"]
    if default_rt not in data["runtime"]["runtimes"]:
        raise ConfigError(
            f"runtime.default_runtime is {default_rt!r} but [runtime.runtimes] defines only: "
            + (", ".join(sorted(data["runtime"]["runtimes"])) or "no handler")
        )
    for key in ("root", "runroot"):
        if not os.path.isabs(data[key]):
            raise ConfigError(f"{key} must be an absolute path, got {data[key]!r}")
    if not os.path.isabs(data["api"]["listen"]):
        raise ConfigError(
            f"api.listen must be an absolute socket path, got {data['api']['listen']!r}"
        )
    for key in ("grpc_max_send_msg_size", "grpc_max_recv_msg_size", "grpc_workers"):
        if data["api"][key] <= 0:
            raise ConfigError(f"api.{key} must be positive, got {data['api'][key]}")
    if data["image"]["max_parallel_downloads"] <= 0:
        raise ConfigError("image.max_parallel_downloads must be positive")
    if data["api"]["shutdown_timeout"] < 0:
        raise ConfigError("api.shutdown_timeout must not be negative")
    if data["stats"]["collection_period"] < 0:
        raise ConfigError("stats.collection_period must not be negative (0 collects on demand)")
    groups = data["stats"]["included_pod_metrics"]
    unknown = [g for g in groups if g not in POD_METRIC_GROUPS]
    if unknown:
        raise ConfigError(
            f"stats.included_pod_metrics: unknown metric group {unknown[0]!r}; choose from "
            + ", ".join(POD_METRIC_GROUPS)
        )
    if "all" in groups and len(groups) > 1:
        raise ConfigError('stats.included_pod_metrics: "all" must be the only entry')


# Flags that override every file: flag destination -> dotted key.
FLAG_KEYS = {
    "listen": "api.listen",
    "root": "root",
    "runroot": "runroot",
    "log_level": "runtime.log_level",
    "cgroup_manager": "runtime.cgroup_manager",
}


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def load(
    config_path: str | None = None,
    config_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    declarations: Declarations | None = None,
) -> Config:
    """Build the effective configuration.

    ``config_path``/``config_dir`` of None mean the standard locations, which
    may be absent; a path the operator named explicitly must exist.
    ``declarations`` of None means those of the installed plugins and drivers.
    """
    decl = discover_declarations() if declarations is None else declarations
    cfg = defaults()
    cfg.declared = tuple(decl.options)
    explicit = config_path is not None
    main = Path(config_path or DEFAULT_CONFIG)
    files: list[Path] = []
    if main.exists() or explicit:
        files.append(main)
    drop_dir = Path(config_dir or DEFAULT_CONFIG_DIR)
    if config_dir is not None and not drop_dir.is_dir():
        raise ConfigError(f"{drop_dir}: config directory does not exist")
    if drop_dir.is_dir():
        files.extend(sorted(p for p in drop_dir.iterdir() if p.suffix == ".conf" and p.is_file()))

    for path in files:
        raw = read_toml(path)
        validate_file_data(str(path), raw, decl)
        _merge(cfg.data, raw)
        cfg.sources.append(str(path))

    flag_raw: dict[str, Any] = {}
    for dest, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(flag_raw, FLAG_KEYS[dest], value)
    if flag_raw:
        validate_file_data("command line", flag_raw, decl)
        _merge(cfg.data, flag_raw)
        cfg.sources.append("command line")

    try:
        _complete_handlers(cfg.data, decl)
        _check_handlers(cfg.data, decl)
        _fill_declared(cfg.data, decl)
        resolve_cgroup_manager(cfg)
        _check_whole(cfg)
    except ConfigError as e:
        # a check across files: say which files the configuration came from
        raise ConfigError(f"{e} (configuration read from: {', '.join(cfg.sources)})") from e
    return cfg


#: systemd creates this directory when it boots as PID 1 (sd_booted(3)).
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"


def resolve_cgroup_manager(cfg: Config, systemd_dir: str = SYSTEMD_RUNTIME_DIR) -> None:
    """Turn an empty ``[runtime] cgroup_manager`` into systemd or cgroupfs.

    Why: on a systemd node the kubelet's usual --cgroup-driver is systemd and
    cgroups made behind systemd's back get moved or killed by it, so systemd
    is the right default there (as in CRI-O); elsewhere there is no systemd to
    ask and cgroupfs is the only choice. The reason goes to ``cfg.notes`` so
    the daemon can log it.
    """
    runtime = cfg.data["runtime"]
    if runtime.get("cgroup_manager"):
        return
    if os.path.isdir(systemd_dir):
        runtime["cgroup_manager"] = "systemd"
        why = f"{systemd_dir} exists: the node runs systemd"
    else:
        runtime["cgroup_manager"] = "cgroupfs"
        why = f"{systemd_dir} does not exist: the node does not run systemd"
    cfg.notes.append(
        f"runtime.cgroup_manager is not set; using {runtime['cgroup_manager']!r} because {why}"
        " (the kubelet's --cgroup-driver must say the same)"
    )
