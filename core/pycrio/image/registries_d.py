"""containers-registries.d(5): where an image's signatures are kept.

Every ``*.yaml`` file of the directory may set ``default-docker`` and
``docker: {<scope>: ...}`` entries, each with ``lookaside`` (where GPG
signatures are read from: ``file://`` or ``http(s)://``), ``lookaside-staging``
(where signers write; read by nobody), the older names ``sigstore`` and
``sigstore-staging``, and ``use-sigstore-attachments``. For an image, the
most specific scope that sets a field wins (the full reference, then the
repository, each parent namespace, the host), then default-docker, as in
containers/image. With nothing configured, GPG signatures are looked for in
file:///var/lib/containers/sigstore, containers/image's built-in default.

Pure logic once loaded; ``load`` reads the files.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from pycrio.errors import FailedPrecondition, InvalidArgument
from pycrio.image.reference import Reference

DEFAULT_DIR = "/etc/containers/registries.d"
BUILTIN_LOOKASIDE = "file:///var/lib/containers/sigstore"
_KEYS = (
    "lookaside",
    "lookaside-staging",
    "sigstore",
    "sigstore-staging",
    "use-sigstore-attachments",
)


@dataclass(frozen=True)
class Entry:
    """One scope's settings; None means "not set here", so a wider scope decides."""

    lookaside: str | None = None
    use_sigstore_attachments: bool | None = None
    source: str = ""


@dataclass(frozen=True)
class RegistriesD:
    default: Entry = Entry()
    docker: Mapping[str, Entry] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    directory: str = ""

    @classmethod
    def load(cls, directory: str | PathLike[str] | None) -> RegistriesD:
        """Read every *.yaml in ``directory`` (sorted); a missing directory means defaults."""
        if not directory:
            return cls()
        try:
            files = sorted(p for p in Path(directory).iterdir() if p.name.endswith(".yaml"))
        except FileNotFoundError:
            return cls(directory=str(directory))
        except OSError as e:
            raise FailedPrecondition(f"cannot read registries.d directory {directory}: {e}") from e
        default: Entry | None = None
        docker: dict[str, Entry] = {}
        for path in files:
            if path.is_dir():
                continue
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise FailedPrecondition(f"cannot read registries.d file {path}: {e}") from e
            except yaml.YAMLError as e:
                raise InvalidArgument(f"invalid YAML in registries.d file {path}: {e}") from e
            file_default, file_docker = parse_document(doc, str(path))
            if file_default is not None:
                if default is not None:
                    raise InvalidArgument(
                        f"registries.d: default-docker is set in both {default.source} and {path}"
                    )
                default = file_default
            for scope, entry in file_docker.items():
                if scope in docker:
                    raise InvalidArgument(
                        f"registries.d: docker scope {scope!r} is set in both "
                        f"{docker[scope].source} and {path}"
                    )
                docker[scope] = entry
        return cls(default or Entry(), MappingProxyType(docker), str(directory))

    def lookaside(self, ref: Reference) -> str:
        """Base URL of the lookaside store for ``ref`` (read side)."""
        for entry in self._entries(ref):
            if entry.lookaside is not None:
                return entry.lookaside
        return BUILTIN_LOOKASIDE

    def use_sigstore_attachments(self, ref: Reference) -> bool:
        for entry in self._entries(ref):
            if entry.use_sigstore_attachments is not None:
                return entry.use_sigstore_attachments
        return False

    def _entries(self, ref: Reference) -> list[Entry]:
        found = [self.docker[s] for s in _scopes(ref) if s in self.docker]
        return [*found, self.default]


def lookaside_url(base: str, ref: Reference, manifest_digest: str, index: int) -> str:
    """<base>/<path without host>@<algo>=<hex>/signature-<index>, index from 1."""
    algorithm, _, hex_part = manifest_digest.partition(":")
    return f"{base.rstrip('/')}/{ref.path}@{algorithm}={hex_part}/signature-{index}"


def parse_document(doc: Any, source: str) -> tuple[Entry | None, dict[str, Entry]]:
    """One registries.d file's (default-docker, docker scopes); raise InvalidArgument."""
    if doc is None:
        return None, {}
    if not isinstance(doc, dict):
        raise InvalidArgument(f"registries.d file {source}: the top level must be a mapping")
    unknown = sorted(set(doc) - {"default-docker", "docker"})
    if unknown:
        raise InvalidArgument(
            f"registries.d file {source}: unknown key {unknown[0]!r}; expected default-docker "
            "and docker"
        )
    default = None
    if doc.get("default-docker") is not None:
        default = _entry(doc["default-docker"], source, "default-docker")
    scopes = doc.get("docker") or {}
    if not isinstance(scopes, dict):
        raise InvalidArgument(f"registries.d file {source}: docker must map scopes to settings")
    docker = {}
    for scope, value in scopes.items():
        if not isinstance(scope, str) or not scope:
            raise InvalidArgument(f"registries.d file {source}: invalid docker scope {scope!r}")
        docker[scope] = _entry(value, source, f"docker.{scope}")
    return default, docker


def _entry(value: Any, source: str, key: str) -> Entry:
    if value is None:
        return Entry(source=source)
    if not isinstance(value, dict):
        raise InvalidArgument(f"registries.d file {source}: {key} must be a mapping")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise InvalidArgument(
            f"registries.d file {source}: {key}: unknown key {unknown[0]!r}; expected one of "
            f"{list(_KEYS)}"
        )
    lookaside = value.get("lookaside", value.get("sigstore"))
    if lookaside is not None:
        lookaside = _url(lookaside, source, f"{key}.lookaside")
    for staging in ("lookaside-staging", "sigstore-staging"):
        if value.get(staging) is not None:
            _url(value[staging], source, f"{key}.{staging}")
    attachments = value.get("use-sigstore-attachments")
    if attachments is not None and not isinstance(attachments, bool):
        raise InvalidArgument(
            f"registries.d file {source}: {key}.use-sigstore-attachments must be true or false"
        )
    return Entry(lookaside, attachments, source)


def _url(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"registries.d file {source}: {key} must be a URL string")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "file" and parts.path.startswith("/") and not parts.netloc:
        return value
    if parts.scheme in ("http", "https") and parts.netloc:
        return value
    raise InvalidArgument(
        f"registries.d file {source}: {key}: {value!r} must be a file:///absolute/path or an "
        "http(s):// URL"
    )


def _scopes(ref: Reference) -> list[str]:
    """The full reference, then the repository and each parent namespace, then the host."""
    scopes = []
    if ref.digest is not None:
        scopes.append(f"{ref.name}@{ref.digest}")
    elif ref.tag is not None:
        scopes.append(f"{ref.name}:{ref.tag}")
    name = ref.name
    while True:
        scopes.append(name)
        head, slash, _ = name.rpartition("/")
        if not slash:
            return scopes
        name = head
