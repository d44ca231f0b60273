"""The runc driver's offline maintenance operations: leftover processes and files.

Real processes with the identity the driver checks (a monitor's pid file
and its ``-P`` argument, a runtime state's pid and start time), real files
in the driver's layout, and real runc + conmon containers for the end to
end case; bystanders that only *look* like ours must be spared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrio_runtime_runc import RuncDriver, leftovers
from pycrio_runtime_runc.leftovers import Layout

from pycrio.config.load import defaults
from pycrio.kernel.interfaces import DriverContext, LeftoverProcess
from pycrio.linux import processes

SLEEPER = "import time; time.sleep(300)"


@pytest.fixture
def spawn() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER, *args])  # noqa: S603 - argv list
        started.append(proc)
        deadline = time.monotonic() + 10
        while processes.argv(proc.pid)[1:2] != ["-c"]:  # until it has exec'd
            assert time.monotonic() < deadline, f"{proc.args} did not start"
            time.sleep(0.01)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def _layout(tmp_path: Path, **kw: str) -> Layout:
    run_dir = tmp_path / "runroot" / "drivers" / "runc"
    values = {
        "run_dir": str(run_dir),
        "runtime_root": str(run_dir / "root"),
        "socket_dir": str(run_dir / "attach"),
        "runroot": str(tmp_path / "runroot"),
        **kw,
    }
    return Layout(**values)


def _monitor_pid_file(layout: Layout, cid: str, pid: int) -> Path:
    path = Path(layout.persist_root) / cid / "conmon.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(pid))
    return path


def _state(layout: Layout, cid: str, pid: int, start: int | None, bundle: str = "") -> None:
    directory = Path(layout.runtime_root) / cid
    directory.mkdir(parents=True)
    bundle = bundle or os.path.join(layout.runroot, "containers", cid, "bundle")
    state = {
        "id": cid,
        "init_process_pid": pid,
        "init_process_start": start,
        "config": {"labels": [f"bundle={bundle}"]},
    }
    (directory / "state.json").write_text(json.dumps(state))


def test_processes_are_identified_exactly(tmp_path: Path, spawn) -> None:
    layout = _layout(tmp_path)
    persist = Path(layout.persist_root)
    # a monitor: its pid file written after it started, its argv "-P <that file>"
    monitor = spawn("-P", str(persist / "m1" / "conmon.pid"))
    _monitor_pid_file(layout, "m1", monitor.pid)
    # a known container's monitor is not left over
    known_monitor = spawn("-P", str(persist / "k1" / "conmon.pid"))
    _monitor_pid_file(layout, "k1", known_monitor.pid)
    # a bystander naming the pid file, but not as conmon's -P argument
    reader = spawn(str(persist / "m2" / "conmon.pid"))
    _monitor_pid_file(layout, "m2", reader.pid)
    # a pid file older than the process it names: the pid was recycled
    late = spawn("-P", str(persist / "m3" / "conmon.pid"))
    old = _monitor_pid_file(layout, "m3", late.pid)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    # a container init: the runtime's pid and start time match
    init = spawn()
    ticks = processes.start_ticks(init.pid)
    assert ticks is not None
    _state(layout, "c1", init.pid, ticks)
    # a recorded pid now belonging to another process (another start time)
    _state(layout, "c2", init.pid, ticks - 1)
    _state(layout, "c3", 0, 0)  # a state without a live init (the container exited)
    (Path(layout.runtime_root) / "c4").mkdir()  # no state.json at all

    found = leftovers.leftover_processes(layout, {"k1"})
    assert sorted(found, key=lambda p: p.pid) == sorted(
        [LeftoverProcess(monitor.pid, "monitor of m1"), LeftoverProcess(init.pid, "container c1")],
        key=lambda p: p.pid,
    )
    assert leftovers.leftover_processes(layout, {"k1", "m1", "c1"}) == []
    for proc in (monitor, known_monitor, reader, late, init):
        assert proc.poll() is None  # listing kills nothing


def test_leftover_files_of_unknown_containers(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    run = Path(layout.run_dir)
    for cid in ("gone", "kept"):
        (run / "containers" / cid).mkdir(parents=True)
        (run / "containers" / cid / "exit").write_text("0")
        (run / "exits").mkdir(exist_ok=True)
        (run / "exits" / cid).write_text("0")
        (run / "monitor-cgroups").mkdir(exist_ok=True)
        (run / "monitor-cgroups" / cid).write_text("[]")
        _state(layout, cid, 0, 0)
        (run / "attach").mkdir(exist_ok=True)
        os.symlink(os.path.join(layout.runroot, "containers", cid), run / "attach" / cid)
    (run / "exits" / "gone.AB12CD").write_text("")  # conmon's temporary name
    (run / "exec").mkdir()
    (run / "exec" / "kept-0123abcd.pid").write_text("")  # no exec runs offline

    expected = {
        str(run / "root" / "gone"),
        str(run / "containers" / "gone"),
        str(run / "exits" / "gone"),
        str(run / "exits" / "gone.AB12CD"),
        str(run / "monitor-cgroups" / "gone"),
        str(run / "exec" / "kept-0123abcd.pid"),
        str(run / "attach" / "gone"),
    }
    assert set(leftovers.leftover_files(layout, {"kept"})) == expected
    assert len(leftovers.leftover_files(layout, {"kept"})) == len(expected)

    everything = set(leftovers.leftover_files(layout, ()))
    assert everything > expected and str(run / "containers" / "kept") in everything


def test_shared_directories_count_only_what_is_ours(tmp_path: Path) -> None:
    runroot = tmp_path / "runroot"
    shared_root, shared_attach = tmp_path / "runc-root", tmp_path / "attach"
    layout = _layout(tmp_path, runtime_root=str(shared_root), socket_dir=str(shared_attach))
    _state(layout, "ours", 0, 0)  # its bundle is in our runroot
    _state(layout, "theirs", 0, 0, bundle=str(tmp_path / "elsewhere" / "bundle"))
    # a sibling daemon's runroot shares our runroot's name as a prefix
    _state(layout, "sibling", 0, 0, bundle=f"{runroot}2/containers/sibling/bundle")
    (shared_root / "garbled").mkdir()
    (shared_root / "garbled" / "state.json").write_text("{")
    shared_attach.mkdir()
    os.symlink(str(runroot / "containers" / "ours" / "bundle"), shared_attach / "ours")
    os.symlink(f"{runroot}2/containers/sibling/bundle", shared_attach / "sibling")
    (shared_attach / "plain").write_text("")

    assert sorted(leftovers.leftover_files(layout, ())) == [
        str(shared_attach / "ours"),
        str(shared_root / "ours"),
    ]


def test_remove_leftovers_keeps_known_and_foreign(tmp_path: Path) -> None:
    runroot = tmp_path / "runroot"
    cfg = defaults()
    cfg.data["runroot"] = str(runroot)
    shared_root = tmp_path / "runc-root"
    ctx = DriverContext(
        "runc",
        cfg,
        {"runtime_root": str(shared_root), "attach_socket_dir": str(tmp_path / "attach")},
        str(tmp_path / "root" / "drivers" / "runc"),
        str(runroot / "drivers" / "runc"),
    )
    driver = RuncDriver(ctx)
    layout = Layout.of(driver)
    _state(layout, "gone", 0, 0)  # runc cannot load this state: removed by hand then
    _state(layout, "kept", 0, 0)
    _state(layout, "theirs", 0, 0, bundle=str(tmp_path / "elsewhere"))
    exits = Path(layout.exit_dir)
    exits.mkdir(parents=True)
    (exits / "gone").write_text("137")
    (exits / "kept").write_text("0")
    # a recorded monitor cgroup that is not a cgroup: never touched, even by rmdir
    not_a_cgroup = tmp_path / "pycrio-conmon-gone"
    not_a_cgroup.mkdir()
    (Path(layout.monitor_cgroups_dir)).mkdir(parents=True)
    (Path(layout.monitor_cgroups_dir) / "gone").write_text(json.dumps([str(not_a_cgroup)]))

    # runc refuses to delete the damaged "gone" state: it is removed by hand, not reported
    assert driver.remove_leftovers({"kept"}) == []
    assert driver.leftover_files({"kept"}) == []
    assert not (shared_root / "gone").exists() and not (exits / "gone").exists()
    assert (shared_root / "kept" / "state.json").exists() and (exits / "kept").exists()
    assert (shared_root / "theirs" / "state.json").exists()
    assert not_a_cgroup.is_dir()
    assert not (Path(layout.monitor_cgroups_dir) / "gone").exists()
