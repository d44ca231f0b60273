"""``pycrio hooks``: check hook files and show what the daemon would inject.

``pycrio hooks validate FILE...`` prints ``FILE: ok`` or ``FILE: error: <what
and where>`` for each file (plus ``FILE: warning: ...`` lines for ignored
fields and conditions that can never hold), and exits 1 if any file is
invalid, so that it can gate a package build or a config-management run.

``pycrio hooks list [--dir D ...]`` prints the effective hooks of the
directories (the defaults unless given), one line per hook in injection order,
then the files that are masked by a later directory or skipped as broken; it
exits 1 when a file is broken.

Entry point ``pycrio.commands: hooks``; the core calls ``main(argv)`` with the
arguments after ``hooks``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pycrio_oci_hooks.directories import DEFAULT_DIRS, scan_once
from pycrio_oci_hooks.schema import HookError, executable_problem, load_hook


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycrio hooks",
        description="Check OCI hook files (schema 1.0.0) and list the hooks pycrio injects.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    validate = sub.add_parser("validate", help="check hook files; exit 1 if any is invalid")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument(
        "--no-path-check",
        action="store_true",
        help="do not require hook.path to exist and be executable on this machine",
    )
    listing = sub.add_parser("list", help="print the effective hooks of the hooks directories")
    listing.add_argument(
        "--dir",
        action="append",
        dest="dirs",
        metavar="D",
        help="a hooks directory, in increasing precedence; repeatable "
        f"(default: {' '.join(DEFAULT_DIRS)})",
    )
    return parser


def cmd_validate(files: Sequence[str], path_check: bool) -> int:
    failed = False
    for file in files:
        try:
            hook = load_hook(file)
        except HookError as e:
            print(f"{file}: error: {e.detail}")
            failed = True
            continue
        problem = executable_problem(hook.path) if path_check else None
        if problem is not None:
            print(f"{file}: error: hook.path: {problem}")
            failed = True
            continue
        print(f"{file}: ok")
        for warning in hook.warnings:
            print(f"{file}: warning: {warning}")
    return 1 if failed else 0


def cmd_list(dirs: Sequence[str]) -> int:
    scan = scan_once(dirs)
    for hook in scan.hooks:
        line = f"{hook.file}: stages={','.join(hook.stages)} when={hook.describe_when()}"
        line += f" path={hook.path}"
        problem = executable_problem(hook.path)
        if problem is not None:
            line += f" (not injected: {problem})"
        print(line)
    for masked, by in scan.masked:
        print(f"{masked}: masked by {by}")
    for error in scan.broken:
        print(f"{error.file}: error: {error.detail}")
    if not scan.hooks and not scan.broken:
        print(f"no hooks in {', '.join(dirs)}", file=sys.stderr)
    return 1 if scan.broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pycrio hooks``; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "validate":
        return cmd_validate(args.files, path_check=not args.no_path_check)
    return cmd_list(args.dirs or list(DEFAULT_DIRS))
