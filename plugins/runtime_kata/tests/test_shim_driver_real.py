"""The shim v2 driver against Debian's real containerd-shim-runc-v2 (containerd 1.6).

Each test runs containers from busybox bundles through a ShimV2Driver whose
shim is containerd's runc v2 shim: one shim per pod, exits from the shim's
forwarded events (and Task.Wait), OOM kills, a crashed shim, a restarted
driver reconnecting to live shims.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from shimenv import ShimEnv, alive, shim_pids_of, skip_reason, wait_for

from pycrio import reaper
from pycrio.errors import FailedPrecondition, Internal, NotFound

pytestmark = pytest.mark.integration

# a container's pid 1 ignores SIGTERM unless it handles it
TRAP_TERM = ["sh", "-c", "trap 'exit 143' TERM; while true; do sleep 0.1; done"]

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)


def _no_shims_left(env: ShimEnv) -> bool:
    reaper.reap_orphans()
    return not shim_pids_of(env.run_dir)


def test_lifecycle_exit_code_and_shim_shutdown(env: ShimEnv) -> None:
    cid, pid = env.create(["sh", "-c", "sleep 0.3; exit 7"])
    assert pid > 0
    assert env.driver.state(cid).status == "created"
    shims = shim_pids_of(env.run_dir)
    assert len(shims) == 1, "one shim serves the new pod"
    env.driver.start(cid)
    assert env.driver.state(cid).status == "running"
    status = env.wait_exit(cid)
    assert status.exit_code == 7
    assert not status.oom_killed
    assert abs(status.finished_at - time.time_ns()) < 30 * 10**9
    assert env.driver.exit_status(cid) == status
    assert env.driver.state(cid).status == "stopped"
    env.driver.delete(cid)
    # the pod's last task is gone: the shim exits, its socket goes with it
    wait_for(lambda: _no_shims_left(env), 10, "the shim to exit")
    with pytest.raises(NotFound):
        env.driver.state(cid)
    assert not os.listdir(os.path.join(env.state_dir, "containers"))
    env.driver.delete(cid)  # deleting an unknown one is not an error


def test_two_containers_share_the_pods_shim(env: ShimEnv) -> None:
    pod = "pod" + os.urandom(6).hex()
    sandbox, _ = env.run(["sleep", "1000"], pod_id=pod, ctype="sandbox")
    app, _ = env.run(TRAP_TERM, pod_id=pod)
    assert len(shim_pids_of(env.run_dir)) == 1
    # the sandbox container is the task named after the pod (what Kata needs)
    assert env.driver._records[sandbox].task_id == pod
    assert env.driver._records[app].task_id == app
    env.driver.kill(app, signal.SIGTERM)
    assert env.wait_exit(app).exit_code == 128 + signal.SIGTERM
    env.driver.delete(app)
    # the sandbox still runs in the same shim
    assert env.driver.state(sandbox).status == "running"
    assert len(shim_pids_of(env.run_dir)) == 1
    with pytest.raises(FailedPrecondition):
        env.driver.delete(sandbox)  # running, not forced
    env.driver.kill(sandbox, signal.SIGKILL)
    assert env.wait_exit(sandbox).exit_code == 137
    env.driver.kill(sandbox, signal.SIGKILL)  # a stopped container: not an error
    env.driver.delete(sandbox)
    wait_for(lambda: _no_shims_left(env), 10, "the shim to exit")


def test_force_delete_of_running_container(env: ShimEnv) -> None:
    cid, pid = env.run(["sleep", "1000"])
    env.driver.delete(cid, force=True)
    wait_for(lambda: not alive(pid), 10, "the container to die")
    wait_for(lambda: _no_shims_left(env), 10, "the shim to exit")


def test_update_pause_resume_and_stats(env: ShimEnv) -> None:
    cid, pid = env.run(["sleep", "1000"])
    limit = 64 << 20
    env.driver.update(cid, {"memory": {"limit": limit}, "cpu": {"shares": 256}})
    memcg = f"/sys/fs/cgroup/memory{env.cgroup_parent}/{cid}/memory.limit_in_bytes"
    with open(memcg) as f:
        assert int(f.read()) == limit
    stats = env.driver.stats(cid)
    assert stats.memory_limit_bytes == limit
    assert stats.memory_usage_bytes > 0
    assert stats.pids >= 1
    assert stats.cpu_usage_ns > 0
    env.driver.pause(cid)
    assert env.driver.state(cid).status == "paused"
    env.driver.resume(cid)
    assert env.driver.state(cid).status == "running"


def test_oom_kill_is_reported(env: ShimEnv) -> None:
    # the shell (the container's pid 1) itself holds 256 MiB: over its 16 MiB
    script = "a=$(head -c 268435456 /dev/zero | tr '\\000' a); echo ${#a}"
    cid, _ = env.run(["sh", "-c", script], memory=16 << 20)
    status = env.wait_exit(cid, 30)
    assert status.oom_killed, status
    assert status.exit_code == 137


def test_killed_shim_reports_its_containers_exited(env: ShimEnv) -> None:
    pod = "pod" + os.urandom(6).hex()
    sandbox, sandbox_pid = env.run(["sleep", "1000"], pod_id=pod, ctype="sandbox")
    cid, pid = env.run(["sleep", "1000"], pod_id=pod)
    created, _ = env.create(["sleep", "1000"], pod_id=pod)
    (shim,) = shim_pids_of(env.run_dir)
    address = env.driver._records[cid].address
    assert os.path.exists(address)
    os.kill(shim, signal.SIGKILL)
    for c in (sandbox, cid, created):
        status = env.wait_exit(c, 30)
        assert status.reason == "Error"
        assert "shim" in status.message
        assert status.exit_code != 0
    # the cleanup (`shim delete`, run where it finds each task's bundle) removed
    # the containers the dead shim left behind, the pod's sandbox task included
    wait_for(lambda: not alive(pid) and not alive(sandbox_pid), 10, "the orphans to be killed")
    assert not os.listdir(env.runc_state_dir)
    reaper.reap_orphans()
    assert not alive(shim)
    assert not os.path.exists(address), "the dead shim's socket is removed"
    for c in (sandbox, cid, created):
        env.driver.delete(c)
        with pytest.raises(NotFound):
            env.driver.state(c)
    assert not os.listdir(env.driver.links_dir)


def test_restart_reconnects_and_reports_missed_exits(env: ShimEnv) -> None:
    long_cid, long_pid = env.run(TRAP_TERM)
    short_cid, _ = env.run(["sh", "-c", "sleep 1; exit 3"])
    env.driver.close()  # the daemon goes away; the shims stay
    time.sleep(1.5)  # the short one exits while nobody listens
    driver = env.restart()
    # the core asks state() of containers it saw CREATED before it calls recover()
    assert driver.state(long_cid).status == "running"
    assert driver.state(short_cid).status == "stopped"
    exits = driver.recover([long_cid, short_cid])
    assert set(exits) == {short_cid}
    assert exits[short_cid].exit_code == 3
    assert exits[short_cid].finished_at > 0
    assert driver.state(long_cid).status == "running"
    assert alive(long_pid)
    # exits after the restart are pushed again
    driver.kill(long_cid, signal.SIGTERM)
    assert env.wait_exit(long_cid).exit_code == 128 + signal.SIGTERM
    for cid in (long_cid, short_cid):
        driver.delete(cid)
    wait_for(lambda: _no_shims_left(env), 10, "the shims to exit")


def test_two_handlers_of_the_driver_share_the_events_socket(env: ShimEnv) -> None:
    """Both handlers' drivers get the kernel's one run dir: each still sees its OOM kills."""
    other = env.new_driver()
    env.drivers.append(other)
    script = "a=$(head -c 268435456 /dev/zero | tr '\\000' a); echo ${#a}"
    first, _ = env.run(["sh", "-c", script], memory=16 << 20)
    env.driver, main = other, env.driver
    try:
        second, _ = env.run(["sh", "-c", script], memory=16 << 20)
        assert env.wait_exit(second, 30).oom_killed
    finally:
        env.driver = main
    assert env.wait_exit(first, 30).oom_killed
    other.delete(second)
    env.driver.delete(first)
    wait_for(lambda: _no_shims_left(env), 10, "the shims to exit")


def test_failed_create_leaves_nothing_behind(env: ShimEnv) -> None:
    with pytest.raises(Internal, match="no-such-binary"):
        env.create(["/bin/no-such-binary"])
    cid = env.ids[-1]
    with pytest.raises(NotFound):
        env.driver.state(cid)
    assert not os.listdir(os.path.join(env.state_dir, "containers"))
    # the shim it started for the pod is shut down again
    wait_for(lambda: _no_shims_left(env), 10, "the shim to exit")


def test_a_shim_that_will_not_start_is_a_clear_error(env: ShimEnv, tmp_path: Path) -> None:
    broken = tmp_path / "broken-shim"
    broken.write_text("#!/bin/sh\necho 'cannot start: no hypervisor' >&2\nexit 3\n")
    broken.chmod(0o755)
    env.driver._runtime_path = str(broken)
    with pytest.raises(Internal, match="start .* failed \\(exit 3\\): cannot start: no hypervisor"):
        env.create(["true"])
    assert not os.listdir(os.path.join(env.state_dir, "containers"))


def test_undo_of_a_create_the_daemon_died_in(env: ShimEnv) -> None:
    """Killed after the shim started but before its address was recorded: the core's undo
    (delete, force) still finds the shim (its address file) and removes the task."""
    cid, pid = env.create(["sleep", "1000"])
    record_path = env.driver.records.path(cid)
    doc = json.loads(open(record_path).read())
    doc["address"] = ""
    open(record_path, "w").write(json.dumps(doc))
    env.driver.close()
    driver = env.restart()
    driver.delete(cid, force=True)  # what the core does with a container it was creating
    wait_for(lambda: not alive(pid), 10, "runc init to go")
    assert not os.listdir(env.runc_state_dir)
    wait_for(lambda: _no_shims_left(env), 10, "the shim to exit")


def test_a_shim_that_died_while_the_daemon_was_down(env: ShimEnv) -> None:
    cid, pid = env.run(["sleep", "1000"])
    (shim,) = shim_pids_of(env.run_dir)
    env.driver.close()
    os.kill(shim, signal.SIGKILL)
    wait_for(lambda: reaper.reap_orphans() is not None and not alive(shim), 10, "the shim to die")
    driver = env.restart()
    exits = driver.recover([cid])
    assert exits[cid].reason == "Error"
    assert "shim" in exits[cid].message
    wait_for(lambda: not alive(pid), 10, "the container the shim left to be removed")
    assert not os.listdir(env.runc_state_dir)
    driver.delete(cid)
