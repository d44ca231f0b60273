"""conmon's argv and the sync-pipe messages, as conmon 2.1 and CRI-O expect them."""

from __future__ import annotations

import pytest
from pycrio_runtime_runc import conmon

from pycrio.errors import Internal, InvalidArgument


def _spec(**kw: object) -> conmon.MonitorSpec:
    base: dict[str, object] = dict(
        conmon_path="/usr/bin/conmon",
        runtime_path="/usr/sbin/runc",
        container_id="abc",
        bundle="/b",
        log_path="/logs/0.log",
        exit_dir="/exits",
        state_dir="/st",
        socket_dir="/sock",
    )
    base.update(kw)
    return conmon.MonitorSpec(**base)  # type: ignore[arg-type]


def _pairs(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("-")}


def test_required_flags() -> None:
    argv = conmon.build_argv(_spec())
    assert argv[0] == "/usr/bin/conmon"
    flags = _pairs(argv)
    assert flags["--api-version"] == "1"
    assert flags["-c"] == "abc" and flags["-u"] == "abc"
    assert flags["-r"] == "/usr/sbin/runc"
    assert flags["-b"] == "/b"
    assert flags["-p"] == "/st/pidfile"
    assert flags["-P"] == "/st/conmon.pid"
    assert flags["-l"] == "k8s-file:/logs/0.log"
    assert flags["--exit-dir"] == "/exits"
    assert flags["--persist-dir"] == "/st"
    assert flags["--socket-dir-path"] == "/sock"
    assert flags["--log-level"] == "info"


def test_never_sync_and_no_optional_flags_by_default() -> None:
    argv = conmon.build_argv(_spec())
    for absent in ("--sync", "-t", "-i", "--leave-stdin-open", "--log-size-max", "--syslog", "-s"):
        assert absent not in argv


def test_runtime_args_each_wrapped() -> None:
    argv = conmon.build_argv(_spec(runtime_args=["--root=/run/r", "--debug"]))
    i = argv.index("--root=/run/r")
    assert argv[i - 1] == "--runtime-arg"
    assert argv[argv.index("--debug") - 1] == "--runtime-arg"


@pytest.mark.parametrize(
    ("tty", "stdin", "once", "expect", "absent"),
    [
        (True, False, False, ["-t"], ["-i", "--leave-stdin-open"]),
        (False, True, False, ["-i", "--leave-stdin-open"], ["-t"]),
        (False, True, True, ["-i"], ["--leave-stdin-open", "-t"]),
        (True, True, False, ["-t", "-i", "--leave-stdin-open"], []),
    ],
)
def test_tty_and_stdin(
    tty: bool, stdin: bool, once: bool, expect: list[str], absent: list[str]
) -> None:
    argv = conmon.build_argv(_spec(tty=tty, stdin=stdin, stdin_once=once))
    for flag in expect:
        assert flag in argv
    for flag in absent:
        assert flag not in argv


def test_log_size_max_and_syslog_and_systemd() -> None:
    argv = conmon.build_argv(_spec(log_size_max=1024, syslog=True, systemd_cgroup=True))
    assert _pairs(argv)["--log-size-max"] == "1024"
    assert "--syslog" in argv and "-s" in argv
    assert "--log-size-max" not in conmon.build_argv(_spec(log_size_max=-1))
    assert _pairs(conmon.build_argv(_spec(log_size_max=0)))["--log-size-max"] == "0"


def test_attach_socket_path_and_length_check() -> None:
    assert conmon.attach_socket_path("/run/x", "id1") == "/run/x/id1/attach"
    conmon.check_socket_dir("/run/pycrio/attach", "a" * 64)
    with pytest.raises(InvalidArgument, match="attach_socket_dir"):
        conmon.check_socket_dir("/" + "d" * 60, "a" * 64)


@pytest.mark.parametrize(
    ("line", "pid", "message"),
    [
        (b'{"data": 1234}\n', 1234, ""),
        (b'{"data": -1, "message": "runc create failed: boom"}\n', -1, "runc create failed: boom"),
        (b'{"pid": 77}\n', 77, ""),
        (b'{"data": 5}\n{"data": 0}\n', 5, ""),
    ],
)
def test_parse_sync_message(line: bytes, pid: int, message: str) -> None:
    assert conmon.parse_sync_message(line) == (pid, message)


def test_parse_sync_message_garbage() -> None:
    with pytest.raises(Internal, match="unreadable"):
        conmon.parse_sync_message(b"not json\n")
