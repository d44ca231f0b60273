"""CNI network configuration: parsing, validation and choosing the network.

Pure functions over bytes and file names, so every rule can be unit-tested
without a filesystem. The rules follow libcni and CRI-O's ocicni:

* files ending in ``.conf``, ``.conflist`` or ``.json`` are considered, in
  lexical order of their names (hidden files are skipped: they are editors'
  and atomic writers' temporaries, never a finished config);
* a ``.conflist`` holds ``name``, ``cniVersion`` (or, since 1.1.0,
  ``cniVersions``) and a non-empty ``plugins`` list; a ``.conf`` holds one
  plugin and is treated as a list of one;
* the first valid file wins, or, when ``cni_default_network`` is set, the
  first valid file whose network has that name.

A file that fails a rule is skipped with a reason, and the reasons are shown
in the NetworkReady condition: an operator whose config is ignored must be
told why.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Spec versions this runtime speaks, oldest first.
SUPPORTED_VERSIONS: tuple[str, ...] = (
    "0.1.0",
    "0.2.0",
    "0.3.0",
    "0.3.1",
    "0.4.0",
    "1.0.0",
    "1.1.0",
)
CONFIG_SUFFIXES: tuple[str, ...] = (".conf", ".conflist", ".json")

# The spec's rule for network names and container ids.
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# A plugin type names an executable looked up in plugin_dirs: never a path.
_TYPE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


class ConfigInvalid(ValueError):
    """A configuration file that must be skipped; the message says why."""


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; raises ValueError for anything else."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{version!r} is not a CNI version such as 1.0.0")
    return tuple(int(p) for p in parts)


def version_at_least(version: str, minimum: str) -> bool:
    """True when ``version`` >= ``minimum``; False for malformed versions."""
    try:
        return version_tuple(version) >= version_tuple(minimum)
    except ValueError:
        return False


def valid_name(name: str) -> bool:
    """The spec's rule for network names and container ids."""
    return bool(_NAME_RE.match(name))


@dataclass
class NetworkConfigList:
    """One network: a list of plugin configs run in order for ADD."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    disable_check: bool = False
    source: str = ""
    #: The whole document as read (a ``.conf`` wrapped into list form).
    raw: dict[str, Any] = field(default_factory=dict)

    def capabilities(self) -> set[str]:
        """Every capability some plugin of the list declares as true."""
        caps: set[str] = set()
        for plugin in self.plugins:
            caps.update(k for k, v in plugin.get("capabilities", {}).items() if v is True)
        return caps

    def to_dict(self) -> dict[str, Any]:
        """The list form, as cached next to a pod's result (enough to DEL it later)."""
        return {
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": copy.deepcopy(self.plugins),
        }


def _pick_version(doc: dict[str, Any]) -> str:
    """The spec version to run a config at.

    ``cniVersions`` (1.1.0) lists the versions a config is good for; the
    highest one this runtime supports is used, as libcni does. Otherwise
    ``cniVersion`` must be one we know.
    """
    versions = doc.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigInvalid("cniVersions must be a list of version strings")
        known = [v for v in versions if v in SUPPORTED_VERSIONS]
        if not known:
            raise ConfigInvalid(f"none of cniVersions {versions} is supported")
        return max(known, key=version_tuple)
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise ConfigInvalid("cniVersion is missing")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigInvalid(
            f"cniVersion {version!r} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    return version


def _check_plugin(plugin: Any, index: int) -> None:
    if not isinstance(plugin, dict):
        raise ConfigInvalid(f"plugins[{index}] is not an object")
    ptype = plugin.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigInvalid(f"plugins[{index}] has no type")
    if not _TYPE_RE.match(ptype):
        raise ConfigInvalid(f"plugins[{index}] type {ptype!r} is not a plugin name")
    caps = plugin.get("capabilities", {})
    if not isinstance(caps, dict):
        raise ConfigInvalid(f"plugins[{index}] capabilities must be an object")


def _as_bool(value: Any, key: str) -> bool:
    # The spec writes disableCheck as a string; libcni also accepts a boolean.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigInvalid(f"{key} must be true or false")


def parse_config(data: bytes | str, filename: str = "") -> NetworkConfigList:
    """Parse and validate one ``.conf`` or ``.conflist`` document.

    The document's shape decides its kind (a ``plugins`` key makes it a list)
    rather than the file's suffix, so a list saved as ``.conf`` still works;
    CRI-O would skip it, but nothing is gained by being stricter.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigInvalid(f"not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigInvalid("not a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigInvalid("name is missing")
    if not valid_name(name):
        raise ConfigInvalid(f"name {name!r} is not a valid network name")
    version = _pick_version(doc)
    if "plugins" in doc:
        plugins = doc["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise ConfigInvalid("plugins must be a non-empty list")
        for i, plugin in enumerate(plugins):
            _check_plugin(plugin, i)
        raw = doc
    else:
        # A single-plugin .conf: the document itself is the plugin.
        _check_plugin(doc, 0)
        plugins = [doc]
        raw = {"cniVersion": version, "name": name, "plugins": plugins}
    return NetworkConfigList(
        name=name,
        cni_version=version,
        plugins=copy.deepcopy(plugins),
        disable_check=_as_bool(doc.get("disableCheck", False), "disableCheck"),
        source=filename,
        raw=copy.deepcopy(raw),
    )


def config_files(names: Iterable[str]) -> list[str]:
    """The candidate file names among ``names``, in the order they are tried."""
    return sorted(n for n in names if n.endswith(CONFIG_SUFFIXES) and not n.startswith("."))


@dataclass
class Selection:
    """The outcome of a directory scan: the chosen network, and why others were not."""

    chosen: NetworkConfigList | None
    problems: list[str] = field(default_factory=list)


def choose(
    files: Iterable[tuple[str, bytes]],
    default_network: str = "",
    check: Callable[[NetworkConfigList], str | None] | None = None,
) -> Selection:
    """Choose the network among ``(file name, content)`` pairs.

    ``check`` validates what the bytes cannot tell (the plugin binaries are
    installed and speak the version): it returns a problem or None. CRI-O
    skips such a config too, so a network provider that writes its config
    before installing its binaries keeps the node NotReady instead of failing
    every pod.
    """
    problems: list[str] = []
    ordered = sorted(files, key=lambda item: item[0])
    for filename, data in ordered:
        try:
            conf = parse_config(data, filename)
        except ConfigInvalid as e:
            problems.append(f"{filename}: {e}")
            continue
        if default_network and conf.name != default_network:
            continue
        problem = check(conf) if check else None
        if problem:
            problems.append(f"{filename}: {problem}")
            continue
        return Selection(conf, problems)
    return Selection(None, problems)
