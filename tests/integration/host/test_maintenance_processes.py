"""`pycrio wipe` and `pycrio check --repair` kill exactly pycrio's processes, never a
bystander naming its paths.

Real processes, real cgroups, a real PID namespace holder; no daemon needed:
the state is laid out as the daemon lays it out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cgroups
import pytest

from pycrio.config import Config, defaults
from pycrio.container.record import ContainerRecord
from pycrio.linux import processes
from pycrio.maintenance import check, wipe
from pycrio.sandbox import namespaces, pause
from pycrio.sandbox.record import SandboxRecord

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("needs root (cgroups, namespaces, mounts)", allow_module_level=True)

SLEEPER = "import sys, time; time.sleep(300)"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = defaults()
    cfg.data["root"] = str(tmp_path / "root")
    cfg.data["runroot"] = str(tmp_path / "runroot")
    cfg.data["runtime"]["namespaces_dir"] = str(tmp_path / "runroot" / "ns")
    return cfg


@pytest.fixture
def spawn() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - argv list
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def _wait_started(proc: subprocess.Popen, argv_tail: str) -> None:
    """Until the child has exec'd (its argv is the one asked for)."""
    deadline = time.monotonic() + 10
    while argv_tail not in processes.argv(proc.pid):
        assert time.monotonic() < deadline, f"{proc.args} did not start"
        time.sleep(0.01)


def test_wipe_kills_ours_and_spares_bystanders(config: Config, spawn, tmp_path: Path) -> None:
    runroot = Path(config.runroot)
    # the runc driver's persist dir for container c1, where conmon writes its pid file
    state = runroot / "drivers" / "runc" / "containers" / "c1"
    state.mkdir(parents=True)
    pidfile = state / "conmon.pid"
    log = runroot / "containers" / "c1" / "ctr.log"
    log.parent.mkdir(parents=True)
    log.write_text("")

    # Bystanders: a daemon on a sibling runroot, an operator's tail -f of a file
    # under ours, a script with our pid file among its arguments.
    sibling = spawn(sys.executable, "-c", SLEEPER, "--runroot", f"{runroot}2")
    tail = spawn("tail", "-f", str(log))
    reader = spawn(sys.executable, "-c", SLEEPER, str(pidfile))

    # Ours: a monitor that wrote its pid file (argv "-P <pidfile>", as conmon's) ...
    monitor = spawn(sys.executable, "-c", SLEEPER, "-P", str(pidfile))
    _wait_started(monitor, str(pidfile))
    pidfile.write_text(str(monitor.pid))
    # ... a shared PID namespace holder, started as the daemon starts it ...
    init_dir = pause.link(str(runroot / "pause"), pause.find_init(""))
    ns_dir = config.get("runtime.namespaces_dir")
    _pin, holder_pid = namespaces.start_pid_holder(ns_dir, "pod1", init_dir)
    # ... and a process inside a container's cgroup (one the runtime's state lost).
    top = f"/pycrio-test-{secrets.token_hex(4)}"
    cgroup = f"{top}/c2"
    cgroups.controller_dir("pids", cgroup).mkdir(parents=True)
    stray = spawn(sys.executable, "-c", SLEEPER)
    (cgroups.controller_dir("pids", cgroup) / "cgroup.procs").write_text(str(stray.pid))
    record = ContainerRecord(
        id="c2", name="c", attempt=0, sandbox_id="p", reservation="r", image="i",
        image_id="", image_ref="", runtime_handler="runc", created_at=0, cgroups_path=cgroup,
    )  # fmt: skip
    records = Path(config.root) / "containers"
    records.mkdir(parents=True)
    (records / "c2.json").write_text(json.dumps(dataclasses.asdict(record)))
    for proc in (sibling, tail, reader):
        _wait_started(proc, proc.args[-1])

    lines: list[str] = []
    try:
        assert wipe(config, lines.append) == 0
        text = "\n".join(lines)
        assert f"killed monitor of c1 (pid {monitor.pid})" in text
        assert f"killed PID namespace holder of pod pod1 (pid {holder_pid})" in text
        assert f"killed process of container c2 (pid {stray.pid})" in text
        for proc in (monitor, stray):
            assert proc.wait(timeout=10) == -9
        deadline = time.monotonic() + 10
        while processes.alive(holder_pid):
            assert time.monotonic() < deadline, "the PID namespace holder survived"
            time.sleep(0.05)
        for proc in (sibling, tail, reader):
            assert proc.poll() is None, f"bystander {proc.args} was killed"
        assert not os.path.exists(state)
        # the container's cgroup went through the cgroup driver (cgroupfs here)
        assert not cgroups.controller_dir("pids", cgroup).exists()
    finally:
        stray.kill()
        stray.wait(timeout=10)
        for leftover in (cgroups.controller_dir("pids", p) for p in (cgroup, top)):
            if leftover.exists():
                leftover.rmdir()


def test_check_repair_kills_only_leftovers_of_unknown_containers(
    config: Config, spawn, tmp_path: Path
) -> None:
    """`pycrio check` asks the runtime driver for what it left behind; --repair removes it."""
    run_dir = Path(config.runroot) / "drivers" / "runc"
    persist = run_dir / "containers"
    pod = SandboxRecord(
        id="p1", name="pod", namespace="ns", uid="u", attempt=0, reservation="r",
        runtime_handler="runc", created_at=0,
    )  # fmt: skip
    known = ContainerRecord(
        id="known", name="c", attempt=0, sandbox_id="p1", reservation="r", image="i",
        image_id="", image_ref="", runtime_handler="runc", created_at=0,
    )  # fmt: skip
    for directory, record in (("sandboxes", pod), ("containers", known)):
        (Path(config.root) / directory).mkdir(parents=True)
        (Path(config.root) / directory / f"{record.id}.json").write_text(
            json.dumps(dataclasses.asdict(record))
        )
    monitors = {}
    for cid in ("known", "lost"):
        (persist / cid).mkdir(parents=True)
        pidfile = persist / cid / "conmon.pid"
        monitors[cid] = spawn(sys.executable, "-c", SLEEPER, "-P", str(pidfile))
        _wait_started(monitors[cid], str(pidfile))
        pidfile.write_text(str(monitors[cid].pid))
    (run_dir / "exits").mkdir()
    (run_dir / "exits" / "lost").write_text("137")
    (run_dir / "exits" / "known").write_text("0")
    bystander = spawn(sys.executable, "-c", SLEEPER, str(persist / "lost" / "conmon.pid"))
    _wait_started(bystander, str(persist / "lost" / "conmon.pid"))

    lines: list[str] = []
    assert check(config, out=lines.append) == 1
    text = "\n".join(lines)
    assert f"monitor of lost (pid {monitors['lost'].pid}) still runs" in text
    assert f"{persist / 'lost'}: no record refers to it" in text
    assert f"{run_dir / 'exits' / 'lost'}: no record refers to it" in text
    assert "known" not in text
    assert all(p.poll() is None for p in (*monitors.values(), bystander))  # check kills nothing

    lines.clear()
    assert check(config, repair=True, out=lines.append) == 0, lines
    assert "no problems remain" in lines
    assert monitors["lost"].wait(timeout=10) == -9
    assert monitors["known"].poll() is None and bystander.poll() is None
    assert not (persist / "lost").exists() and not (run_dir / "exits" / "lost").exists()
    assert (persist / "known" / "conmon.pid").exists() and (run_dir / "exits" / "known").exists()
