"""The OCI hooks plugin: inject hooks from the hooks directories into container specs.

Configuration, in order of precedence (the first one set wins, they are not
merged, so an operator listing directories gets exactly those):

1. ``[plugins.oci_hooks] dirs = [...]``, this plugin's own table;
2. ``[runtime] hooks_dir``, CRI-O's option name, a string or a list, if the
   core's configuration has it;
3. the defaults, /usr/share/containers/oci/hooks.d then
   /etc/containers/oci/hooks.d.

Later directories override earlier ones by file name. The plugin depends only
on the hook specifications: the container and sandbox it is handed are read
defensively for their annotations and mounts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from pycrio.kernel.hookspecs import hookimpl
from pycrio_oci_hooks.directories import DEFAULT_DIRS, HookDirectories
from pycrio_oci_hooks.matcher import inject, select
from pycrio_oci_hooks.options import OPTIONS as DECLARED
from pycrio_oci_hooks.schema import HookDefinition, executable_problem

log = logging.getLogger("pycrio.oci_hooks")

PLUGIN_NAME = "oci_hooks"
#: the keys of [plugins.oci_hooks], as declared for the loader (pycrio_oci_hooks.options)
OPTIONS = tuple(o.key for o in DECLARED if o.table == f"plugins.{PLUGIN_NAME}")


class OCIHooksConfigError(ValueError):
    """A bad ``[plugins.oci_hooks]`` or ``[runtime] hooks_dir``, phrased for the operator."""


def _data(config: Any) -> Mapping[str, Any]:
    """The configuration as a nested dict, from a pycrio Config or a plain dict."""
    data = getattr(config, "data", config)
    return data if isinstance(data, Mapping) else {}


def _dir_list(where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(d, str) for d in value):
        raise OCIHooksConfigError(f"{where} must be a list of directory paths, got {value!r}")
    for d in value:
        if not d.startswith("/"):
            raise OCIHooksConfigError(f"{where}: {d!r} is not an absolute path")
    return list(value)


def configured_dirs(config: Any) -> list[str]:
    """The hooks directories a configuration asks for (see the module docstring)."""
    data = _data(config)
    plugins = data.get("plugins")
    table = plugins.get(PLUGIN_NAME) if isinstance(plugins, Mapping) else None
    table = table if isinstance(table, Mapping) else {}
    for key in table:
        if key not in OPTIONS:
            log.warning(
                "[plugins.%s]: unknown option %r ignored (known: %s)",
                PLUGIN_NAME,
                key,
                ", ".join(OPTIONS),
            )
    if table.get("dirs") is not None:
        return _dir_list(f"[plugins.{PLUGIN_NAME}] dirs", table["dirs"])
    runtime = data.get("runtime")
    hooks_dir = runtime.get("hooks_dir") if isinstance(runtime, Mapping) else None
    if hooks_dir:
        return _dir_list("[runtime] hooks_dir", hooks_dir)
    return list(DEFAULT_DIRS)


class OCIHooksPlugin:
    """Instantiated without arguments by the kernel; reads its configuration at startup.

    Until startup it uses the default directories, so that it also works when
    registered by hand (tests, tools).
    """

    def __init__(self, dirs: list[str] | None = None) -> None:
        self.directories = HookDirectories(DEFAULT_DIRS if dirs is None else dirs)
        self._lock = threading.Lock()
        self._unrunnable: dict[str, str] = {}  # hook file -> problem already logged

    @hookimpl
    def pycrio_startup(self, kernel: Any) -> None:
        """Read the directories; a bad configuration fails this plugin loudly.

        On a bad configuration no directory is used: injecting hooks from
        directories the operator did not choose would be worse than none.
        """
        try:
            dirs = configured_dirs(kernel.config)
        except OCIHooksConfigError:
            self.directories.set_dirs([])
            raise
        self.directories.set_dirs(dirs)
        log.info("OCI hooks directories: %s", ", ".join(dirs) or "(none)")
        self.directories.current()  # load now: broken files are reported at startup

    @hookimpl
    def pycrio_config_reload(self, new: Any) -> None:
        """Switch directories on SIGHUP; a bad new value keeps the running ones."""
        try:
            dirs = configured_dirs(new)
        except OCIHooksConfigError as e:
            log.error("OCI hooks configuration not reloaded, keeping the running one: %s", e)
            return
        if tuple(dirs) != self.directories.dirs:
            log.info("OCI hooks directories: %s", ", ".join(dirs) or "(none)")
            self.directories.set_dirs(dirs)
            self.directories.current()

    @hookimpl
    def pycrio_adjust_container_spec(
        self, spec: dict[str, Any], container: Any, sandbox: Any
    ) -> None:
        """Append the hooks whose conditions match to the spec's stages."""
        hooks = self.directories.current().hooks
        if not hooks:
            return
        chosen = [h for h in select(hooks, spec, container, sandbox) if self._runnable(h)]
        inject(spec, chosen)
        if chosen:
            log.debug(
                "container %s: OCI hooks %s",
                getattr(container, "id", "?"),
                ", ".join(h.name for h in chosen),
            )

    def _runnable(self, hook: HookDefinition) -> bool:
        """Skip a hook whose binary is missing; the runtime would fail the create.

        Logged once until it changes, not once per container.
        """
        problem = executable_problem(hook.path)
        with self._lock:
            if problem is None:
                self._unrunnable.pop(hook.file, None)
                return True
            if self._unrunnable.get(hook.file) != problem:
                self._unrunnable[hook.file] = problem
                log.warning("OCI hook %s not injected: hook.path %s", hook.file, problem)
        return False
