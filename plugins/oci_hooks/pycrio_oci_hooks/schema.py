"""Reading and validating one OCI hook file (schema 1.0.0, oci-hooks(5)).

A hook file looks like::

    {
      "version": "1.0.0",
      "hook": {"path": "/usr/libexec/oci/hooks.d/my-hook", "args": ["my-hook", "prestart"]},
      "when": {"annotations": {"^com\\\\.example\\\\.gpu$": "^true$"}},
      "stages": ["prestart"]
    }

The person reading our errors is a hook author, so every error names the file,
the JSON path of the offending field (``when.annotations["^io.x$"]``,
``stages[1]``) and what is wrong with it. Everything is checked when the file
is read, regular expressions included, so that a hook that loads never fails
later while a container is being created. The one exception is whether
``hook.path`` exists: the binary may be installed after its JSON file, so that
is checked when the hook is injected (and by ``pycrio hooks validate``).

Fields we do not know are not errors (CRI-O and Podman ignore them too, and a
newer file must keep loading) but become warnings, with a suggestion when the
name is close to a known one: ``"command"`` for ``"commands"`` is the typical
mistake that otherwise silently changes when a hook runs.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

VERSION = "1.0.0"

# The OCI runtime spec's hook stages, spelled as the keys of spec["hooks"].
STAGES: tuple[str, ...] = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

TOP_FIELDS = ("version", "hook", "when", "stages")
HOOK_FIELDS = ("path", "args", "env", "timeout")
WHEN_FIELDS = ("always", "annotations", "commands", "hasBindMounts")

_ENV_KEY = re.compile(r"[^=\0]+")


class HookError(Exception):
    """A hook file that cannot be used, with where and why.

    ``field`` is the JSON path of the bad field ("" for the file as a whole),
    ``reason`` what is wrong; ``detail`` is both together, for callers (the
    CLI) that print the file name themselves.
    """

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        super().__init__(f"{file}: {self.detail}")

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


@dataclass(frozen=True)
class Pattern:
    """A compiled regular expression that remembers how it was written."""

    source: str
    regex: re.Pattern[str]

    def search(self, text: str) -> bool:
        """Unanchored, like Go's regexp.MatchString used by CRI-O: write ^...$ to anchor."""
        return self.regex.search(text) is not None


@dataclass(frozen=True)
class HookDefinition:
    """One valid hook file: what to inject, when and at which stages."""

    file: str  # the path it was read from
    path: str
    args: tuple[str, ...] | None = None
    env: tuple[str, ...] | None = None
    timeout: int | None = None
    always: bool | None = None
    annotations: tuple[tuple[Pattern, Pattern], ...] = ()
    commands: tuple[Pattern, ...] = ()
    has_bind_mounts: bool | None = None
    stages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        """The file name: what directories override each other by."""
        return os.path.basename(self.file)

    def oci_hook(self) -> dict[str, Any]:
        """The entry for spec["hooks"][stage]; a fresh dict each time, safe to mutate."""
        entry: dict[str, Any] = {"path": self.path}
        if self.args is not None:
            entry["args"] = list(self.args)
        if self.env is not None:
            entry["env"] = list(self.env)
        if self.timeout is not None:
            entry["timeout"] = self.timeout
        return entry

    def describe_when(self) -> str:
        """The conditions, all of which must hold, in a form an operator can read."""
        parts: list[str] = []
        if self.always is not None:
            parts.append("always" if self.always else "always=false (never matches)")
        if self.annotations:
            pairs = ", ".join(
                f"{json.dumps(k.source)}: {json.dumps(v.source)}" for k, v in self.annotations
            )
            parts.append(f"annotations {{{pairs}}}")
        if self.commands:
            parts.append(
                "commands [" + ", ".join(json.dumps(c.source) for c in self.commands) + "]"
            )
        if self.has_bind_mounts is not None:
            parts.append(
                "hasBindMounts" if self.has_bind_mounts else "hasBindMounts=false (never matches)"
            )
        return " and ".join(parts)


def _type_name(value: Any) -> str:
    """JSON's name for a value's type, as the hook author wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A wrong value as the author wrote it, shortened: the type and the text."""
    if value is None:
        return "null"
    text = json.dumps(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_type_name(value)} {text}"


def _key(key: str) -> str:
    """A map key in a JSON path: always quoted, so regex keys read unambiguously."""
    return f"[{json.dumps(key)}]"


def _unknown(prefix: str, data: dict[str, Any], known: tuple[str, ...]) -> list[str]:
    """Warnings for fields we do not read, with a guess at the intended one."""
    out = []
    for name in data:
        if name in known:
            continue
        where = f"{prefix}.{name}" if prefix else name
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f' (did you mean "{guess[0]}"?)' if guess else ""
        out.append(f"{where}: unknown field, ignored{hint}")
    return out


def _compile(file: str, where: str, pattern: str) -> Pattern:
    try:
        return Pattern(pattern, re.compile(pattern))
    except re.error as e:
        raise HookError(file, where, f"invalid regular expression: {e}") from None


class _Reader:
    """Validates one decoded document; methods raise HookError on the first problem."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.warnings: list[str] = []

    def fail(self, where: str, reason: str) -> HookError:
        return HookError(self.file, where, reason)

    def expect(self, where: str, value: Any, kind: type, name: str) -> Any:
        # bool is an int in Python but not a number a hook author meant.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return self._wrong(where, value, name)
        return value

    def _wrong(self, where: str, value: Any, name: str) -> Any:
        raise self.fail(where, f"must be {name}, got {_show(value)}")

    def strings(self, where: str, value: Any) -> list[str]:
        self.expect(where, value, list, "an array of strings")
        for i, item in enumerate(value):
            self.expect(f"{where}[{i}]", item, str, "a string")
        return value

    def read(self, doc: Any) -> HookDefinition:
        if not isinstance(doc, dict):
            raise self.fail("", f"must be a JSON object, got {_type_name(doc)}")
        self.warnings += _unknown("", doc, TOP_FIELDS)
        self.version(doc)
        if "hook" not in doc:
            raise self.fail("hook", "missing required field")
        hook = self.expect("hook", doc["hook"], dict, "an object")
        self.warnings += _unknown("hook", hook, HOOK_FIELDS)
        path = self.hook_path(hook)
        args = env = timeout = None
        if "args" in hook:
            args = tuple(self.strings("hook.args", hook["args"]))
        if "env" in hook:
            env = tuple(self.strings("hook.env", hook["env"]))
            for i, item in enumerate(env):
                name, eq, _ = item.partition("=")
                if not eq or not _ENV_KEY.fullmatch(name):
                    raise self.fail(
                        f"hook.env[{i}]", f'must be "NAME=value", got {json.dumps(item)}'
                    )
        if "timeout" in hook:
            timeout = self.expect("hook.timeout", hook["timeout"], int, "an integer (seconds)")
            if timeout <= 0:
                raise self.fail("hook.timeout", f"must be greater than zero, got {timeout}")
        conditions = self.when(doc)
        stages = self.stages(doc)
        return HookDefinition(
            file=self.file,
            path=path,
            args=args,
            env=env,
            timeout=timeout,
            stages=stages,
            warnings=tuple(self.warnings),
            **conditions,
        )

    def version(self, doc: dict[str, Any]) -> None:
        if "version" not in doc:
            if isinstance(doc.get("hook"), str):
                raise self.fail(
                    "version",
                    "missing; this looks like a legacy 0.1.0 hook file, which pycrio does not "
                    f'read: convert it to version "{VERSION}" (see oci-hooks(5))',
                )
            raise self.fail("version", f'missing required field (expected "{VERSION}")')
        version = doc["version"]
        if version != VERSION:
            raise self.fail(
                "version", f'unsupported version {json.dumps(version)} (expected "{VERSION}")'
            )

    def hook_path(self, hook: dict[str, Any]) -> str:
        if "path" not in hook:
            raise self.fail("hook.path", "missing required field")
        path = self.expect("hook.path", hook["path"], str, "a string")
        if not path:
            raise self.fail("hook.path", "must not be empty")
        if not os.path.isabs(path):
            raise self.fail("hook.path", f"must be an absolute path, got {json.dumps(path)}")
        return path

    def when(self, doc: dict[str, Any]) -> dict[str, Any]:
        if "when" not in doc:
            raise self.fail("when", "missing required field")
        when = self.expect("when", doc["when"], dict, "an object")
        self.warnings += _unknown("when", when, WHEN_FIELDS)
        out: dict[str, Any] = {}
        if "always" in when:
            out["always"] = self.expect("when.always", when["always"], bool, "a boolean")
            if not out["always"]:
                self.warnings.append("when.always: false never matches: this hook is never used")
        if "hasBindMounts" in when:
            out["has_bind_mounts"] = self.expect(
                "when.hasBindMounts", when["hasBindMounts"], bool, "a boolean"
            )
            if not out["has_bind_mounts"]:
                self.warnings.append(
                    "when.hasBindMounts: false never matches: this hook is never used"
                )
        if "annotations" in when:
            annotations = self.expect("when.annotations", when["annotations"], dict, "an object")
            pairs = []
            for key, value in annotations.items():
                where = f"when.annotations{_key(key)}"
                self.expect(where, value, str, "a string (a regular expression)")
                pairs.append((_compile(self.file, where, key), _compile(self.file, where, value)))
            if not pairs:
                self.warnings.append("when.annotations: empty, ignored")
            out["annotations"] = tuple(pairs)
        if "commands" in when:
            commands = self.strings("when.commands", when["commands"])
            out["commands"] = tuple(
                _compile(self.file, f"when.commands[{i}]", c) for i, c in enumerate(commands)
            )
            if not commands:
                self.warnings.append("when.commands: empty, ignored")
        if not (
            "always" in out
            or "has_bind_mounts" in out
            or out.get("annotations")
            or out.get("commands")
        ):
            raise self.fail(
                "when",
                "no condition set: set at least one of always, annotations, commands, "
                "hasBindMounts (empty annotations or commands do not count)",
            )
        return out

    def stages(self, doc: dict[str, Any]) -> tuple[str, ...]:
        if "stages" not in doc:
            hint = ' (found "stage": the field is "stages")' if "stage" in doc else ""
            raise self.fail("stages", f"missing required field{hint}")
        stages = self.strings("stages", doc["stages"])
        if not stages:
            raise self.fail("stages", f"must name at least one stage of {', '.join(STAGES)}")
        seen: list[str] = []
        for i, stage in enumerate(stages):
            if stage not in STAGES:
                guess = difflib.get_close_matches(stage, STAGES, n=1, cutoff=0.6)
                hint = f' (did you mean "{guess[0]}"?)' if guess else ""
                raise self.fail(
                    f"stages[{i}]",
                    f"unknown stage {json.dumps(stage)}{hint}; known: {', '.join(STAGES)}",
                )
            if stage in seen:
                self.warnings.append(f"stages[{i}]: {stage} is listed twice; injected once")
                continue
            seen.append(stage)
        return tuple(seen)


def parse_hook(text: str | bytes, file: str) -> HookDefinition:
    """Validate a hook document; ``file`` is only used to name it in errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HookError(file, "", f"not UTF-8 text: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise HookError(
            file, "", f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    return _Reader(file).read(doc)


def load_hook(path: str) -> HookDefinition:
    """Read and validate one hook file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise HookError(path, "", f"cannot read: {e.strerror or e}") from None
    return parse_hook(data, path)


def executable_problem(path: str) -> str | None:
    """Why ``hook.path`` cannot be run, or None when it can.

    Checked when injecting rather than when reading the file: a package may
    install the JSON before the binary, and a missing binary makes the OCI
    runtime fail the whole container create.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    if not os.path.isfile(path):
        return f"{path}: not a regular file"
    if not st.st_mode & 0o111 or not os.access(path, os.X_OK):
        return f"{path}: not executable"
    return None
