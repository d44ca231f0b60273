"""containers-registries.conf(5), version 2: where an image is pulled from, if at all.

CRI-O reads these files through containers/image, so node operators already
have them: mirrors, blocked registries, insecure registries, short-name aliases
and unqualified-search registries. pycrio reads the same files with the same
merge and matching rules so that configuration carries over unchanged.

Pure logic: the caller passes the paths (nothing is read at import), and nothing
here talks to a registry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pycrio.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from pycrio.image.reference import (
    DEFAULT_TAG,
    Reference,
    is_image_id,
    is_short_name,
    is_valid_domain,
    parse,
    split_reference,
)

DEFAULT_MAIN_PATH = "/etc/containers/registries.conf"
DEFAULT_DROP_IN_DIR = "/etc/containers/registries.conf.d"

SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
# What containers/image assumes when no file sets short-name-mode.
DEFAULT_SHORT_NAME_MODE = "permissive"
PULL_FROM_MIRROR_VALUES = ("all", "digest-only", "tag-only")

StrPath = str | PathLike[str]


@dataclass(frozen=True)
class Mirror:
    """A [[registry.mirror]]: tried before the registry itself."""

    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"


@dataclass(frozen=True)
class Registry:
    """A [[registry]] table, with the file it came from for error messages."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class PullSource:
    """One place to try: the reference rewritten for that endpoint, and its TLS setting."""

    reference: Reference
    insecure: bool
    mirror: bool


@dataclass(frozen=True)
class ShortNameAlias:
    """An [aliases] entry. value None means a later file reset the alias with ""."""

    value: Reference | None
    source: str


@dataclass(frozen=True)
class RegistriesConfig:
    """The merged result of registries.conf and its drop-ins."""

    registries: tuple[Registry, ...] = ()
    unqualified_search_registries: tuple[str, ...] = ()
    # The file that set unqualified_search_registries, named in errors.
    search_registries_source: str = ""
    short_name_mode: str = DEFAULT_SHORT_NAME_MODE
    aliases: Mapping[str, ShortNameAlias] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    # Every file read, in order: for messages when nothing was configured.
    sources: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        main_path: StrPath | None,
        drop_in_dir: StrPath | None = None,
        *,
        short_name_aliases_path: StrPath | None = None,
    ) -> RegistriesConfig:
        """Read the main file, then drop-ins in lexical order, as containers/image does.

        A drop-in's [[registry]] replaces an earlier one with the same prefix,
        top-level settings it sets replace earlier ones, and aliases merge key
        by key. short_name_aliases_path is the machine-written
        short-name-aliases.conf, whose aliases win over all others. Missing
        files and directories mean defaults: most nodes have no drop-ins.
        """
        files: list[tuple[str, dict[str, Any], bool]] = []
        if main_path is not None:
            doc = _read_toml(main_path)
            if doc is not None:
                files.append((str(main_path), doc, False))
        if drop_in_dir is not None:
            for path in _drop_in_files(drop_in_dir):
                doc = _read_toml(path)
                if doc is not None:
                    files.append((str(path), doc, True))

        registries: dict[str, Registry] = {}
        search: tuple[str, ...] = ()
        search_source = ""
        mode = DEFAULT_SHORT_NAME_MODE
        aliases: dict[str, ShortNameAlias] = {}
        for path, doc, drop_in in files:
            parsed = _parse_file(path, doc, drop_in=drop_in)
            registries.update((r.prefix, r) for r in parsed.registries)
            if parsed.search is not None:
                search, search_source = parsed.search, path
            if parsed.mode is not None:
                mode = parsed.mode
            aliases.update(parsed.aliases)
        sources = [path for path, _, _ in files]
        if short_name_aliases_path is not None:
            doc = _read_toml(short_name_aliases_path)
            if doc is not None:
                path = str(short_name_aliases_path)
                aliases.update(_parse_aliases(path, doc.get("aliases", {})))
                sources.append(path)
        return cls(
            # Sorted by prefix like containers/image, so logs are stable.
            registries=tuple(registries[p] for p in sorted(registries)),
            unqualified_search_registries=search,
            search_registries_source=search_source,
            short_name_mode=mode,
            aliases=MappingProxyType(aliases),
            sources=tuple(sources),
        )

    def find_registry(self, ref: Reference) -> Registry | None:
        """The [[registry]] whose prefix is the longest match for ref, if any."""
        best: Registry | None = None
        ref_string = ref.string()
        for registry in self.registries:
            if _prefix_match_end(ref_string, registry.prefix) != -1 and (
                best is None or len(registry.prefix) > len(best.prefix)
            ):
                best = registry
        return best

    def pull_sources(self, ref: Reference) -> list[PullSource]:
        """Where to try pulling ref from, in order: allowed mirrors, then the registry.

        A mirror serving tags can drift from its registry, which is what
        mirror-by-digest-only and pull-from-mirror guard against; a reference
        with a digest counts as a digest pull even when it also has a tag.
        """
        registry = self.find_registry(ref)
        if registry is None:
            return [PullSource(reference=ref, insecure=False, mirror=False)]
        if registry.blocked:
            raise PermissionDenied(
                f"pulling {ref} is not allowed: registry prefix {registry.prefix!r} is blocked "
                f"in {registry.source}"
            )
        by_digest = ref.digest is not None
        sources: list[PullSource] = []
        for mirror in registry.mirrors:
            wanted = {
                "all": not registry.mirror_by_digest_only or by_digest,
                "digest-only": by_digest,
                "tag-only": not by_digest,
            }[mirror.pull_from_mirror]
            if wanted:
                rewritten = _rewrite(ref, registry, mirror.location)
                sources.append(PullSource(rewritten, insecure=mirror.insecure, mirror=True))
        rewritten = _rewrite(ref, registry, registry.location)
        sources.append(PullSource(rewritten, insecure=registry.insecure, mirror=False))
        return sources

    def resolve_short_name(self, name: str) -> list[Reference]:
        """The fully qualified candidates for name, in the order to try them.

        A name with a registry is returned as is. Otherwise an alias wins; if
        there is none, each unqualified-search registry gives one candidate.
        The tag or digest written by the user is kept, and ":latest" is added
        when there is neither. short_name_mode is recorded but never prompts:
        the kubelet cannot answer a prompt, so every candidate is returned.
        """
        if not is_short_name(name):
            return [parse(name)]
        if is_image_id(name):
            raise InvalidArgument(
                f"{name!r} is an image ID, not an image name; it cannot be resolved against "
                "registries"
            )
        repo, tag, digest = split_reference(name)
        alias = self.aliases.get(repo)
        if alias is not None and alias.value is not None:
            ref = replace(alias.value, tag=tag, digest=digest)
            return [ref if tag or digest else ref.with_tag(DEFAULT_TAG)]
        if not self.unqualified_search_registries:
            where = ", ".join(self.sources) or "no registries.conf file was found"
            raise InvalidArgument(
                f"short name {name!r} did not resolve to an alias and no "
                f"unqualified-search-registries are defined ({where}); use a fully qualified "
                "name such as docker.io/library/busybox:latest, or add "
                'unqualified-search-registries = ["docker.io"] or an [aliases] entry to '
                "registries.conf"
            )
        candidates = []
        for registry in self.unqualified_search_registries:
            try:
                candidates.append(parse(f"{registry}/{name}"))
            except InvalidArgument as e:
                raise InvalidArgument(
                    f"resolving short name {name!r} with unqualified-search registry "
                    f"{registry!r} from {self.search_registries_source}: {e.message}"
                ) from e
        return candidates


@dataclass(frozen=True)
class _ParsedFile:
    registries: tuple[Registry, ...]
    search: tuple[str, ...] | None
    mode: str | None
    aliases: dict[str, ShortNameAlias]


def _error(path: str, key: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid registries configuration {path}: {key}: {why}")


def _read_toml(path: StrPath) -> dict[str, Any] | None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FailedPrecondition(
            f"cannot read registries configuration {path}: {e.strerror or e}"
        ) from e
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid TOML in registries configuration {path}: {e}") from e


def _drop_in_files(directory: StrPath) -> list[Path]:
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return []
    except OSError as e:
        raise FailedPrecondition(
            f"cannot read registries.conf.d directory {directory}: {e.strerror or e}"
        ) from e
    return sorted(
        (p for p in entries if p.name.endswith(".conf") and not p.is_dir()),
        key=lambda p: p.name,
    )


def _parse_file(path: str, doc: dict[str, Any], *, drop_in: bool) -> _ParsedFile:
    if "registries" in doc:
        raise _error(
            path,
            "registries",
            "the version 1 format ([registries.search], [registries.insecure], "
            "[registries.block]) is not supported; use unqualified-search-registries and "
            "[[registry]] tables with insecure/blocked instead"
            + (" (drop-ins must use version 2)" if drop_in else ""),
        )
    search = None
    if "unqualified-search-registries" in doc:
        search = _parse_search(path, doc["unqualified-search-registries"])
    mode = None
    if "short-name-mode" in doc:
        mode = doc["short-name-mode"]
        if mode not in SHORT_NAME_MODES:
            raise _error(path, "short-name-mode", f"{mode!r} is not one of {SHORT_NAME_MODES}")
    tables = doc.get("registry", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _error(path, "registry", "must be an array of tables, written [[registry]]")
    registries = [_parse_registry(path, t, f"registry[{i}]") for i, t in enumerate(tables)]
    _check_conflicts(path, registries)
    unique: dict[str, Registry] = {}
    for registry in registries:
        # Within one file the first table for a prefix wins, as in containers/image.
        unique.setdefault(registry.prefix, registry)
    aliases = _parse_aliases(path, doc.get("aliases", {}))
    return _ParsedFile(tuple(unique.values()), search, mode, aliases)


def _parse_search(path: str, value: Any) -> tuple[str, ...]:
    key = "unqualified-search-registries"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(path, key, 'must be an array of strings, e.g. ["docker.io", "quay.io"]')
    result = []
    for entry in value:
        host = entry.rstrip("/")
        if not is_valid_domain(host):
            raise _error(path, key, f"{entry!r} is not a registry host[:port]")
        result.append(host)
    return tuple(result)


def _parse_registry(path: str, table: dict[str, Any], key: str) -> Registry:
    location = _get_location(path, table, f"{key}.location")
    prefix = _get_str(path, table, f"{key}.prefix", "prefix")
    if "pull-from-mirror" in table:
        raise _error(
            path, f"{key}.pull-from-mirror", "may only be set in a [[registry.mirror]] table"
        )
    if not prefix:
        if not location:
            raise _error(path, key, "sets neither prefix nor location")
        prefix = location
    else:
        prefix = _check_prefix(path, f"{key}.prefix", prefix)
        if not location and not prefix.startswith("*."):
            raise _error(
                path, f"{key}.location", "may only be empty for a wildcard prefix (*.example.com)"
            )
    by_digest_only = _get_bool(path, table, f"{key}.mirror-by-digest-only", "mirror-by-digest-only")
    mirror_tables = table.get("mirror", [])
    if not isinstance(mirror_tables, list) or not all(isinstance(m, dict) for m in mirror_tables):
        raise _error(
            path, f"{key}.mirror", "must be an array of tables, written [[registry.mirror]]"
        )
    mirrors = []
    for i, m in enumerate(mirror_tables):
        mkey = f"{key}.mirror[{i}]"
        mirror_location = _get_location(path, m, f"{mkey}.location")
        if not mirror_location:
            raise _error(path, f"{mkey}.location", "must be set")
        pull_from = _get_str(path, m, f"{mkey}.pull-from-mirror", "pull-from-mirror")
        if pull_from and by_digest_only:
            raise _error(
                path,
                f"{mkey}.pull-from-mirror",
                f"cannot be combined with mirror-by-digest-only on registry {prefix!r}; "
                "use one or the other",
            )
        if pull_from and pull_from not in PULL_FROM_MIRROR_VALUES:
            raise _error(
                path,
                f"{mkey}.pull-from-mirror",
                f"{pull_from!r} is not one of {PULL_FROM_MIRROR_VALUES}",
            )
        mirrors.append(
            Mirror(
                location=mirror_location,
                insecure=_get_bool(path, m, f"{mkey}.insecure", "insecure"),
                pull_from_mirror=pull_from or "all",
            )
        )
    return Registry(
        prefix=prefix,
        location=location,
        insecure=_get_bool(path, table, f"{key}.insecure", "insecure"),
        blocked=_get_bool(path, table, f"{key}.blocked", "blocked"),
        mirror_by_digest_only=by_digest_only,
        mirrors=tuple(mirrors),
        source=path,
    )


def _get_str(path: str, table: dict[str, Any], key: str, name: str) -> str:
    value = table.get(name, "")
    if not isinstance(value, str):
        raise _error(path, key, f"must be a string, got {value!r}")
    return value


def _get_bool(path: str, table: dict[str, Any], key: str, name: str) -> bool:
    value = table.get(name, False)
    if not isinstance(value, bool):
        raise _error(path, key, f"must be true or false, got {value!r}")
    return value


def _get_location(path: str, table: dict[str, Any], key: str) -> str:
    location = _get_str(path, table, key, "location").rstrip("/")
    if location:
        _check_not_url(path, key, location)
        if not _is_repository_prefix(location, allow_tag=False):
            raise _error(path, key, f"{location!r} is not host[:port][/namespace...] of a registry")
    return location


def _check_prefix(path: str, key: str, prefix: str) -> str:
    prefix = prefix.rstrip("/")
    _check_not_url(path, key, prefix)
    if prefix.startswith("*."):
        if any(c in prefix for c in "/@:") or not is_valid_domain(prefix[2:]):
            raise _error(
                path,
                key,
                f"wildcard prefix {prefix!r} must look like *.example.com "
                "(no port, namespace, tag or digest)",
            )
    elif not _is_repository_prefix(prefix, allow_tag=True):
        raise _error(
            path,
            key,
            f"{prefix!r} is not host[:port][/namespace...][/repo[:tag|@digest]] or *.host",
        )
    return prefix


def _check_not_url(path: str, key: str, value: str) -> None:
    if value.startswith(("http://", "https://")):
        raise _error(path, key, f"{value!r}: URI schemes are not supported; drop the scheme")


def _is_repository_prefix(value: str, *, allow_tag: bool) -> bool:
    if "/" not in value:
        return is_valid_domain(value)
    try:
        _, tag, digest = split_reference(value)
    except InvalidArgument:
        return False
    return allow_tag or (tag is None and digest is None)


def _check_conflicts(path: str, registries: Iterable[Registry]) -> None:
    """One registry listed under several prefixes must agree on TLS and blocking."""
    seen: dict[str, Registry] = {}
    for registry in registries:
        key = registry.location or registry.prefix
        other = seen.setdefault(key, registry)
        for setting in ("insecure", "blocked"):
            if getattr(other, setting) != getattr(registry, setting):
                raise _error(
                    path,
                    "registry",
                    f"registry {key!r} is defined for prefixes {other.prefix!r} and "
                    f"{registry.prefix!r} with conflicting {setting!r} settings",
                )


def _parse_aliases(path: str, table: Any) -> dict[str, ShortNameAlias]:
    if not isinstance(table, dict):
        raise _error(path, "aliases", 'must be a table of "short-name" = "registry/repository"')
    aliases = {}
    for name, value in table.items():
        key = f'aliases."{name}"'
        if not isinstance(value, str):
            raise _error(path, key, f"must be a string, got {value!r}")
        try:
            _, tag, digest = split_reference(name)
        except InvalidArgument as e:
            raise _error(path, key, f"the alias name is not a valid image name: {e.message}") from e
        if tag or digest or not is_short_name(name):
            raise _error(
                path,
                key,
                "an alias name must be a short name without registry, tag "
                'or digest, e.g. "busybox"',
            )
        if not value:
            # An empty value resets an alias an earlier file set.
            aliases[name] = ShortNameAlias(None, path)
            continue
        try:
            _, tag, digest = split_reference(value)
            ref = parse(value)
        except InvalidArgument as e:
            raise _error(path, key, f"{value!r} is not a valid image name: {e.message}") from e
        if tag or digest or is_short_name(value):
            raise _error(
                path,
                key,
                f"{value!r} must name a registry and repository without tag or "
                'digest, e.g. "docker.io/library/busybox"',
            )
        aliases[name] = ShortNameAlias(replace(ref, tag=None), path)
    return aliases


def _prefix_match_end(ref: str, prefix: str) -> int:
    """Where prefix's match ends in ref, or -1: matches stop at ':', '/' or '@'.

    So example.com/foo matches example.com/foo/bar and example.com/foo:tag but
    not example.com/foobar. Like containers/image, "example.com" also matches
    "example.com:5000/..." because ':' is a boundary. *.example.com matches any
    subdomain (not example.com itself) in the host part only.
    """
    if prefix.startswith("*."):
        suffix = prefix[1:]
        start = ref.find(suffix)
        if start == -1 or "/" in ref[:start]:
            return -1
        end = start + len(suffix)
    else:
        if not ref.startswith(prefix):
            return -1
        end = len(prefix)
    if end == len(ref) or ref[end] in ":/@":
        return end
    return -1


def _rewrite(ref: Reference, registry: Registry, location: str) -> Reference:
    """Replace the matched prefix of ref with location (example.com/a -> mirror.io/m/a)."""
    if not location:
        # A wildcard prefix without location pulls from the matched host itself.
        return ref
    ref_string = ref.string()
    rewritten = location + ref_string[_prefix_match_end(ref_string, registry.prefix) :]
    try:
        result = parse(rewritten)
    except InvalidArgument as e:
        raise InvalidArgument(
            f"registry prefix {registry.prefix!r} with location {location!r} in "
            f"{registry.source} rewrites {ref_string} to an invalid reference: {e.message}"
        ) from e
    if not rewritten.startswith(result.name):
        raise InvalidArgument(
            f"registry prefix {registry.prefix!r} with location {location!r} in "
            f"{registry.source} rewrites {ref_string} to {rewritten}, which is not a "
            f"normalized name (it means {result}); write the location in full"
        )
    return result
