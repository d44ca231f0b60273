"""Whether a hook applies to a container, and injecting it into the OCI spec.

The rules are oci-hooks(5)'s for schema 1.0.0: a hook is injected when *all*
of the conditions set in its ``when`` hold (they are ANDed; a hook must set at
least one):

- ``always``: true holds; false never holds (so the hook is never injected);
- ``annotations``: every key/value pair of regexes matches some annotation of
  the container (one annotation whose key matches the key regex and whose
  value matches the value regex);
- ``commands``: ``process.args[0]`` matches any one of the regexes;
- ``hasBindMounts``: true holds when the container has host-to-container bind
  mounts; false never holds (as in containers/common).

Regexes are searched, not anchored, like Go's ``regexp.MatchString`` that
CRI-O and Podman use: authors anchor with ``^`` and ``$``.

Injected hooks are appended after any hooks the spec already has at that
stage (the core or another plugin put those there on purpose), in the order of
the hook file names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from pycrio_oci_hooks.schema import HookDefinition

BIND_OPTIONS = frozenset({"bind", "rbind"})


def annotation_pairs(
    spec: dict[str, Any], container: Any = None, sandbox: Any = None
) -> list[tuple[str, str]]:
    """The annotations a hook's conditions are matched against.

    The spec's own annotations, then the container's and the pod's CRI
    annotations: CRI-O matches hooks against the container's annotations
    merged with the pod's, and a pod-level annotation (a GPU request, say) is
    the common way to ask for a hook. ``container`` and ``sandbox`` are read
    defensively (any object with an ``annotations`` mapping) because the
    plugin must not depend on the core's record classes.
    """
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    sources = [spec.get("annotations")]
    sources += [getattr(obj, "annotations", None) for obj in (container, sandbox)]
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            pair = (str(key), str(value))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def _under(path: str, root: str) -> bool:
    if not path or not root:
        return False
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def has_bind_mounts(spec: dict[str, Any], container: Any = None, sandbox: Any = None) -> bool:
    """Whether the caller asked for host-to-container bind mounts.

    CRI-O answers this from the CRI config's mounts. Those are the
    container's ``mounts`` when the core has recorded them by now; otherwise
    we look at the spec's bind mounts, leaving out the ones the runtime makes
    for every container (/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm
    from the pod's run directory, files from the container's own directories),
    which the caller did not ask for.
    """
    requested = getattr(container, "mounts", None)
    if isinstance(requested, list | tuple) and requested:
        return True
    own_dirs = [getattr(sandbox, "run_dir", "")]
    own_dirs += [getattr(container, name, "") for name in ("state_dir", "bundle")]
    own_files = {getattr(sandbox, "shm_path", "")}
    for mount in spec.get("mounts") or []:
        if not isinstance(mount, dict):
            continue
        options = mount.get("options") or []
        if mount.get("type") != "bind" and not BIND_OPTIONS.intersection(options):
            continue
        source = str(mount.get("source") or "")
        if source in own_files or any(_under(source, d) for d in own_dirs if isinstance(d, str)):
            continue
        return True
    return False


def command_of(spec: dict[str, Any]) -> str | None:
    """``process.args[0]``, or None when the spec has no process or no args."""
    process = spec.get("process")
    if not isinstance(process, dict):
        return None
    args = process.get("args")
    if not isinstance(args, list) or not args:
        return None
    return str(args[0])


def matches(
    hook: HookDefinition,
    annotations: Sequence[tuple[str, str]],
    command: str | None,
    bind_mounts: bool,
) -> bool:
    """Whether every condition the hook sets holds (oci-hooks(5): "If all ... match")."""
    conditions = 0
    if hook.always is not None:
        if not hook.always:
            return False
        conditions += 1
    if hook.has_bind_mounts is not None:
        if not (hook.has_bind_mounts and bind_mounts):
            return False
        conditions += 1
    for key_re, value_re in hook.annotations:
        if not any(key_re.search(k) and value_re.search(v) for k, v in annotations):
            return False
        conditions += 1
    if hook.commands:
        if command is None or not any(c.search(command) for c in hook.commands):
            return False
        conditions += 1
    # A hook without conditions is rejected when read; never inject one anyway.
    return conditions > 0


def select(
    hooks: Iterable[HookDefinition],
    spec: dict[str, Any],
    container: Any = None,
    sandbox: Any = None,
) -> list[HookDefinition]:
    """The hooks that apply to this container, in the order given."""
    annotations = annotation_pairs(spec, container, sandbox)
    command = command_of(spec)
    bind_mounts = has_bind_mounts(spec, container, sandbox)
    return [h for h in hooks if matches(h, annotations, command, bind_mounts)]


def inject(spec: dict[str, Any], hooks: Iterable[HookDefinition]) -> None:
    """Append each hook to ``spec["hooks"][stage]`` for each of its stages.

    Existing entries stay first and untouched; ``hooks`` is taken in order
    (the directory scan sorts it by file name).
    """
    hooks = list(hooks)
    if not hooks:
        return
    table = spec.get("hooks")
    if not isinstance(table, dict):
        table = spec["hooks"] = {}
    for hook in hooks:
        for stage in hook.stages:
            entries = table.get(stage)
            if not isinstance(entries, list):
                entries = table[stage] = []
            entries.append(hook.oci_hook())
