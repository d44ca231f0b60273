"""The `pycrio` command: run the daemon, print configuration, list plugins."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import pycrio
from pycrio.config import Config, ConfigError, load
from pycrio.config.schema import LOG_LEVELS

BUILTIN_COMMANDS = ("run", "config", "plugins", "version", "status", "wipe", "check")


def _add_config_flags(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Config flags, accepted before and after the command name."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config", default=default, help="configuration file (default /etc/pycrio/pycrio.conf)"
    )
    parser.add_argument(
        "--config-dir",
        default=default,
        help="drop-in directory read in lexical order (default /etc/pycrio/pycrio.conf.d)",
    )
    parser.add_argument("--listen", default=default, help="CRI socket path ([api] listen)")
    parser.add_argument("--root", default=default, help="persistent state directory (root)")
    parser.add_argument("--runroot", default=default, help="volatile state directory (runroot)")
    parser.add_argument(
        "--log-level", default=default, choices=LOG_LEVELS, help="[runtime] log_level"
    )
    parser.add_argument("--cgroup-manager", default=default, help="[runtime] cgroup_manager")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycrio",
        description="A Kubernetes CRI daemon. Without a command, runs the daemon.",
    )
    _add_config_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon (the default)")
    config = sub.add_parser("config", help="print the effective configuration as TOML")
    config.add_argument(
        "--default",
        action="store_true",
        help="print the embedded defaults, with a comment per option",
    )
    plugins = sub.add_parser("plugins", help="list the plugins and drivers found")
    version = sub.add_parser("version", help="print the version")
    status = sub.add_parser(
        "status", help="ask a running daemon through its status API (info, config, containers)"
    )
    status.add_argument(
        "--socket", default=None, help="status API socket (default from [api] status_listen)"
    )
    status.add_argument("what", choices=("info", "config", "containers"), help="what to show")
    status.add_argument("id", nargs="?", default="", help="container id (for containers)")
    wipe = sub.add_parser(
        "wipe", help="remove all pods, containers and images (the daemon must be stopped)"
    )
    check = sub.add_parser("check", help="verify the stored state (the daemon must be stopped)")
    check.add_argument(
        "--repair", action="store_true", help="remove orphans and records that cannot be fixed"
    )
    for p in (run, config, plugins, version, status, wipe, check):
        _add_config_flags(p, suppress=True)
    return parser


def load_from_args(args: argparse.Namespace) -> Config:
    overrides = {
        "listen": args.listen,
        "root": args.root,
        "runroot": args.runroot,
        "log_level": args.log_level,
        "cgroup_manager": args.cgroup_manager,
    }
    return load(args.config, args.config_dir, overrides)


def cmd_config(args: argparse.Namespace) -> int:
    from pycrio.config import defaults
    from pycrio.config.load import discover_declarations
    from pycrio.config.render import annotated_defaults, to_toml

    if args.default:
        sys.stdout.write(annotated_defaults(defaults(discover_declarations())))
    else:
        sys.stdout.write(to_toml(load_from_args(args)))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """What the daemon would load with this configuration, and why not.

    Plugins are imported and built (their constructors are cheap by
    contract) but not started; the configured drivers are imported and
    checked but not started; other drivers are only listed.
    """
    from pycrio.kernel.discovery import discover
    from pycrio.kernel.kernel import DriverLoadError, build_kernel, configured_drivers

    found = discover()
    try:
        cfg = load_from_args(args)
    except ConfigError as e:
        cfg, problem = None, f"configuration not checked: {e}"
    if cfg is not None:
        try:
            build_kernel(cfg, lambda _kernel: [], found, instantiate_drivers=False)
            problem = ""
        except DriverLoadError as e:
            problem = str(e)
    rows = [("GROUP", "NAME", "DISTRIBUTION", "VERSION", "STATUS")]
    rows += [(f.group, f.name, f.distribution, f.version, f.status) for f in found]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    if cfg is not None:
        names = {(f.group, f.name): f for f in found}
        print("\nDrivers the configuration requires:")
        for group, name, role in configured_drivers(cfg):
            item = names.get((group, name))
            state = "not installed" if item is None else item.status
            print(f"  {role}: {name} ({group}): {state}")
    if problem:
        print(f"\n({problem})")
    if cfg is not None:
        _print_plugin_conditions(cfg.listen)
    return 0


def _print_plugin_conditions(listen: str) -> None:
    """What plugins of a running daemon report in Status (e.g. connected NRI plugins)."""
    import grpc
    from cri_api.v1 import api_pb2, api_pb2_grpc

    path = listen.removeprefix("unix://")
    if not os.path.exists(path):
        print(f"\n(no daemon listening on {path}: runtime plugin state not shown)")
        return
    with grpc.insecure_channel(f"unix:{path}") as channel:
        try:
            status = api_pb2_grpc.RuntimeServiceStub(channel).Status(
                api_pb2.StatusRequest(), timeout=STATUS_TIMEOUT
            )
        except grpc.RpcError as e:
            print(f"\n(the daemon on {path} did not answer Status: {e.code().name})")
            return
    extra = [
        c
        for c in status.status.conditions
        if c.type not in ("RuntimeReady", "NetworkReady", "PluginsLoaded")
    ]
    if extra:
        print("\nReported by the running daemon's plugins:")
        for c in extra:
            print(f"  {c.type}: {c.message or ('true' if c.status else 'false')}")


STATUS_TIMEOUT = 10.0


def cmd_status(args: argparse.Namespace) -> int:
    """Print what the daemon's status API answers (JSON, or TOML for config)."""
    import http.client
    import json
    import socket

    from pycrio.server.status_api import status_socket_path

    if args.what == "containers" and not args.id:
        print("pycrio status containers: a container id is required", file=sys.stderr)
        return 2
    path = args.socket or status_socket_path(load_from_args(args))
    url = {"info": "/info", "config": "/config"}.get(args.what) or "/containers/" + args.id

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(STATUS_TIMEOUT)
            self.sock.connect(path)

    conn = UnixConnection("localhost", timeout=STATUS_TIMEOUT)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(
            f"pycrio status: cannot connect to {path}: is the daemon running? ({e.strerror})",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        print(f"pycrio status: talking to {path} failed: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if response.status != 200:
        try:
            message = json.loads(body).get("error", body)
        except (ValueError, AttributeError):
            message = body.strip()
        print(f"pycrio status: {message}", file=sys.stderr)
        return 1
    sys.stdout.write(body if body.endswith("\n") else body + "\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pycrio.daemon import Daemon, StartupError

    cfg = load_from_args(args)
    try:
        return Daemon(cfg, reload=lambda: load_from_args(args)).run()
    except StartupError as e:
        print(f"pycrio: cannot start: {e}", file=sys.stderr)
        return 1


def cmd_wipe(args: argparse.Namespace) -> int:
    from pycrio.maintenance import wipe

    return wipe(load_from_args(args))


def cmd_check(args: argparse.Namespace) -> int:
    from pycrio.maintenance import check

    return check(load_from_args(args), repair=args.repair)


COMMANDS_GROUP = "pycrio.commands"


def plugin_command(argv: Sequence[str]) -> int | None:
    """Run ``pycrio <name> ...`` from a plugin's ``pycrio.commands`` entry point.

    Returns None when no plugin provides the command, so the built-in parser
    reports it as unknown.
    """
    if not argv or argv[0].startswith("-"):
        return None
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name == argv[0]:
            return int(ep.load()(list(argv[1:])) or 0)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in BUILTIN_COMMANDS:
        result = plugin_command(argv)
        if result is not None:
            return result
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command == "version":
        print(f"pycrio {pycrio.version()}")
        return 0
    if command != "run":
        # Printing commands end quietly when piped into `head`.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    handlers = {
        "run": cmd_run,
        "config": cmd_config,
        "plugins": cmd_plugins,
        "status": cmd_status,
        "wipe": cmd_wipe,
        "check": cmd_check,
    }
    try:
        return handlers[command](args)
    except ConfigError as e:
        print(f"pycrio: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
