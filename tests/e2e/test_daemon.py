"""The daemon as a process, driven over its socket with the generated CRI stubs."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import grpc
import pytest
import runtime_mode
from cri_api.v1 import api_pb2

pytestmark = pytest.mark.e2e


def conditions(resp: api_pb2.StatusResponse) -> dict[str, api_pb2.RuntimeCondition]:
    return {c.type: c for c in resp.status.conditions}


def test_version_status_runtime_config_and_unimplemented(start_daemon, tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    d = start_daemon(config=f"[network]\nnetwork_dir = '{tmp_path / 'net.d'}'\n")
    rt = d.runtime()
    v = rt.Version(api_pb2.VersionRequest(version="v1"))
    assert v.runtime_name == "pycrio"
    assert v.runtime_api_version == "v1"
    from importlib.metadata import version

    assert v.runtime_version == version("pycrio")

    st = rt.Status(api_pb2.StatusRequest())
    conds = conditions(st)
    assert conds["RuntimeReady"].status, conds["RuntimeReady"].message  # runc + conmon
    handlers = {h.name: h for h in st.runtime_handlers}
    assert set(handlers) == {"", *runtime_mode.handlers()}  # "" is the default handler
    assert st.features.supplemental_groups_policy
    assert not conds["NetworkReady"].status  # the cni driver has no configuration
    assert conds["NetworkReady"].reason == "NetworkPluginNotReady"
    assert str(tmp_path / "net.d") in conds["NetworkReady"].message
    assert not st.info

    verbose = rt.Status(api_pb2.StatusRequest(verbose=True))
    import json

    assert json.loads(verbose.info["config"])["api"]["listen"] == d.socket

    rc = rt.RuntimeConfig(api_pb2.RuntimeConfigRequest())
    assert rc.linux.cgroup_driver == api_pb2.CGROUPFS

    with pytest.raises(grpc.RpcError) as err:
        rt.CheckpointContainer(api_pb2.CheckpointContainerRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in err.value.details()
    # GetContainerEvents is served: an idle stream lasts until the caller's deadline.
    with pytest.raises(grpc.RpcError) as err:
        list(rt.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=1))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_socket_mode_and_cgroup_manager_flag(start_daemon) -> None:
    d = start_daemon("--cgroup-manager", "systemd")
    mode = os.stat(d.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    rc = d.runtime().RuntimeConfig(api_pb2.RuntimeConfigRequest())
    assert rc.linux.cgroup_driver == api_pb2.SYSTEMD


def test_bad_config_exits_non_zero_naming_the_key(start_daemon, tmp_path: Path) -> None:
    conf = tmp_path / "pycrio.conf"
    d = start_daemon(
        config="[runtime]\nlog_level = 'debug'\ncgroup_manger = 'systemd'\n", wait=False
    )
    assert d.wait(timeout=30) == 2
    err = d.stderr()
    assert "configuration error" in err
    assert str(conf) in err and "'runtime.cgroup_manger'" in err
    assert not os.path.exists(d.socket)


def test_stale_socket_is_replaced(start_daemon, tmp_path: Path) -> None:
    sock_path = tmp_path / "run" / "pycrio.sock"
    sock_path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sock_path))
    dead.close()  # the file stays, nobody listens: a crashed daemon's leftover
    assert sock_path.exists()
    d = start_daemon()
    assert d.runtime().Version(api_pb2.VersionRequest()).runtime_name == "pycrio"
    assert "removed stale socket" in d.stderr()


def test_regular_file_at_socket_path_is_not_deleted(start_daemon, tmp_path: Path) -> None:
    path = tmp_path / "run" / "pycrio.sock"
    path.parent.mkdir(parents=True)
    path.write_text("precious")
    d = start_daemon(wait=False)
    assert d.wait(timeout=30) == 1
    assert "is not a socket" in d.stderr()
    assert path.read_text() == "precious"


def other_daemon(first, tmp_path: Path, listen: str) -> subprocess.CompletedProcess:
    """Run a second daemon with its own state dirs; it is expected to refuse."""
    return pycrio_cmd(
        "--config",
        str(first.config),
        "--config-dir",
        str(first.config_dir),
        "--listen",
        listen,
        "--root",
        str(tmp_path / "second-root"),
        "--runroot",
        str(tmp_path / "second-runroot"),
    )


def test_second_daemon_on_a_live_socket_is_refused(start_daemon, tmp_path: Path) -> None:
    first = start_daemon()
    result = other_daemon(first, tmp_path, first.socket)
    assert result.returncode == 1
    assert f"another server is listening on {first.socket}" in result.stderr
    assert first.runtime().Version(api_pb2.VersionRequest()).runtime_name == "pycrio"


def test_second_daemon_on_the_same_runroot_is_refused(start_daemon, tmp_path: Path) -> None:
    first = start_daemon()
    other_sock = str(tmp_path / "other.sock")
    result = pycrio_cmd(
        "--config",
        str(first.config),
        "--config-dir",
        str(first.config_dir),
        "--listen",
        other_sock,
        "--root",
        str(first.tmp / "root"),
        "--runroot",
        str(first.tmp / "runroot"),
    )
    assert result.returncode == 1
    assert (
        f"another pycrio (pid {first.proc.pid}) is using {first.tmp / 'runroot'}" in result.stderr
    )
    assert not os.path.exists(other_sock)
    assert first.runtime().Version(api_pb2.VersionRequest()).runtime_name == "pycrio"


def test_sigterm_exits_cleanly_and_removes_the_socket(start_daemon) -> None:
    d = start_daemon()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert not os.path.exists(d.socket)
    assert "pycrio stopped" in d.stderr()


def test_sigterm_lets_an_in_flight_call_finish(start_daemon, plugin_site: Path) -> None:
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        config="[plugins.testgood]\nlist_images_delay = 2.0\n",
    )
    result: dict[str, object] = {}

    def slow_call() -> None:
        try:
            result["resp"] = d.images().ListImages(api_pb2.ListImagesRequest(), timeout=30)
        except grpc.RpcError as e:  # recorded and asserted on below
            result["error"] = e

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.7)  # the call is now inside the plugin's sleep
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError):
        # a call arriving after SIGTERM is not served
        d.runtime().Version(api_pb2.VersionRequest(), timeout=2)
    t.join(timeout=30)
    assert "error" not in result, result
    assert isinstance(result["resp"], api_pb2.ListImagesResponse)
    assert d.wait(timeout=30) == 0


def test_sighup_reloads_log_level_and_logs_what_changed(start_daemon) -> None:
    d = start_daemon()
    d.runtime().Version(api_pb2.VersionRequest())
    assert "Version OK" not in d.stderr()  # info level: no per-call line
    (d.config_dir / "50-debug.conf").write_text("[runtime]\nlog_level = 'debug'\n")
    (d.config_dir / "60-workers.conf").write_text("[api]\ngrpc_workers = 7\n")
    d.signal(signal.SIGHUP)
    applied = "reloaded runtime.log_level: 'info' -> 'debug'"
    pending = "api.grpc_workers changed in the configuration; it takes effect after a restart"
    deadline = time.monotonic() + 10  # both lines, whichever the daemon has written so far
    while not (applied in d.stderr() and pending in d.stderr()) and time.monotonic() < deadline:
        time.sleep(0.05)
    err = d.stderr()
    assert applied in err
    assert pending in err
    d.runtime().Version(api_pb2.VersionRequest())
    deadline = time.monotonic() + 5
    while "Version OK" not in d.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "DEBUG pycrio.server: Version OK" in d.stderr()


def test_sighup_with_broken_config_keeps_running(start_daemon) -> None:
    d = start_daemon()
    (d.config_dir / "50-bad.conf").write_text("[runtime]\nlog_level = 3\n")
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in d.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "configuration reload failed, keeping the running configuration" in d.stderr()
    assert "50-bad.conf" in d.stderr()
    assert d.runtime().Version(api_pb2.VersionRequest()).runtime_name == "pycrio"


def test_trace_log_never_shows_credentials(start_daemon) -> None:
    d = start_daemon("--log-level", "trace")
    with pytest.raises(grpc.RpcError):
        d.images().PullImage(
            api_pb2.PullImageRequest(
                image=api_pb2.ImageSpec(image="127.0.0.1:1/app:1"),
                auth=api_pb2.AuthConfig(username="bob", password="hunter2-secret"),
            )
        )
    err = d.stderr()
    assert "PullImage request" in err and "127.0.0.1:1/app:1" in err
    assert "hunter2-secret" not in err
    assert "PullImage UNAVAILABLE" in err  # nothing listens on 127.0.0.1:1


def test_plugins_are_loaded_reported_and_a_broken_one_is_tolerated(
    start_daemon, plugin_site: Path
) -> None:
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        dropins={"10-net.conf": "[network]\ndriver = 'testnet'\n"},
    )
    st = conditions(d.runtime().Status(api_pb2.StatusRequest()))
    assert st["NetworkReady"].status and st["NetworkReady"].reason == "TestNetworkReady"
    assert st["TestGoodReady"].status
    assert not st["PluginsLoaded"].status
    assert "testbad" in st["PluginsLoaded"].message
    assert "pycrio-test-bad is broken on purpose" in d.stderr()


def test_required_broken_driver_stops_the_daemon(start_daemon, plugin_site: Path) -> None:
    d = start_daemon(
        env={"PYTHONPATH": str(plugin_site)},
        dropins={"10-net.conf": "[network]\ndriver = 'testbroken'\n"},
        wait=False,
    )
    assert d.wait(timeout=30) == 1
    err = d.stderr()
    assert "cannot start" in err
    assert "'testbroken'" in err and "pycrio-test-bad 0.0.1" in err
    assert "RuntimeError: pycrio-test-bad is broken on purpose" in err
    assert not os.path.exists(d.socket)


def pycrio_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pycrio", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_config_command_output_loads_back_identically(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    conf = tmp_path / "a.conf"
    conf.write_text("[runtime]\nlog_level = 'warn'\n[runtime.runtimes.crun]\ndriver = 'crun'\n")
    first = pycrio_cmd(
        "config",
        "--config",
        str(conf),
        "--config-dir",
        str(tmp_path / "d"),
        "--root",
        "/srv/pycrio",
    )
    assert first.returncode == 0, first.stderr
    data = tomllib.loads(first.stdout)
    assert data["root"] == "/srv/pycrio" and data["runtime"]["log_level"] == "warn"
    (tmp_path / "b.conf").write_text(first.stdout)
    second = pycrio_cmd(
        "config", "--config", str(tmp_path / "b.conf"), "--config-dir", str(tmp_path / "d")
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout


def test_config_default_is_commented_toml(tmp_path: Path) -> None:
    out = pycrio_cmd("config", "--default")
    assert out.returncode == 0
    assert tomllib.loads(out.stdout)["api"]["listen"] == "/run/pycrio/pycrio.sock"
    assert "# Path of the unix socket" in out.stdout


def test_plugins_command_lists_group_name_distribution_version_status(
    plugin_site: Path, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "c.conf").write_text("")
    out = pycrio_cmd(
        "plugins",
        "--config",
        str(tmp_path / "c.conf"),
        "--config-dir",
        str(tmp_path / "d"),
        env={"PYTHONPATH": str(plugin_site)},
    )
    assert out.returncode == 0, out.stderr
    lines = [line.split(None, 4) for line in out.stdout.splitlines()]
    rows = {(r[0], r[1]): r for r in lines if len(r) == 5}
    assert rows[("pycrio.plugins", "testgood")][2:] == ["pycrio-test-good", "1.2.3", "loaded"]
    assert rows[("pycrio.plugins", "testbad")][4].startswith("error: RuntimeError")
    assert rows[("pycrio.network", "testnet")][2:4] == ["pycrio-test-driver", "4.5.6"]
    assert "runtime handler 'runc': runc (pycrio.runtime): loaded" in out.stdout
    assert "network driver: cni (pycrio.network): loaded" in out.stdout


def test_plugins_add_cli_commands(plugin_site: Path) -> None:
    out = pycrio_cmd("testcmd", "a", "--b", env={"PYTHONPATH": str(plugin_site)})
    assert out.returncode == 3
    assert out.stdout.strip() == "testcmd got a --b"
    unknown = pycrio_cmd("nosuchcmd")
    assert unknown.returncode == 2 and "invalid choice: 'nosuchcmd'" in unknown.stderr


def test_a_bad_stream_port_stops_the_daemon_with_a_clear_error(start_daemon) -> None:
    d = start_daemon(wait=False, config="[api]\nstream_port = 'ten'\n")
    assert d.wait(timeout=30) == 1
    assert "api.stream_port 'ten' is not a number" in d.stderr()


def test_a_stream_port_in_use_stops_the_daemon_naming_the_address(start_daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = start_daemon(wait=False, config=f"[api]\nstream_port = '{port}'\n")
        assert d.wait(timeout=30) == 1
    assert f"the streaming server cannot listen on 127.0.0.1:{port}" in d.stderr()
