"""pycrio check / wipe's view of the shim v2 driver: its shims, files and the shims' containers."""

from __future__ import annotations

import os
import signal

import pytest
from shimenv import ShimEnv, alive, shim_pids_of, skip_reason, wait_for

from pycrio import reaper

pytestmark = pytest.mark.integration

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)


def test_a_pods_shim_and_its_containers_are_found_and_removed_offline(env: ShimEnv) -> None:
    pod = "pod" + os.urandom(6).hex()
    sandbox, sandbox_pid = env.run(["sleep", "1000"], pod_id=pod, ctype="sandbox")
    cid, pid = env.run(["sleep", "1000"], pod_id=pod)
    record = env.driver._records[cid]
    (shim,) = shim_pids_of(env.run_dir)
    env.driver.close()  # the daemon stops; pycrio wipe builds the driver offline
    offline = env.new_driver(listen=False)
    env.drivers.append(offline)

    # known: the pod, or any of its containers, keeps the shim
    assert offline.leftover_processes({pod, sandbox, cid}) == []
    assert offline.leftover_processes({cid}) == []
    assert offline.leftover_files({sandbox, cid}) == []
    left = {(p.pid, p.what) for p in offline.leftover_processes(set())}
    holder = record.holder_pid
    assert left == {(shim, f"shim of pod {pod}"), (holder, f"output FIFO holder of {cid}")}
    files = offline.leftover_files(set())
    for path in (record.address, record.bundle, record.io_dir, offline.records.path(cid)):
        assert path in files

    for victim in (shim, holder):  # what the core does with the pids it is given
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda v=victim: reaper.reap_orphans() is not None and not alive(v), 10, "death")
    assert offline.remove_leftovers(set()) == []
    # the shim binary's delete removed the containers the shim left running
    wait_for(lambda: not alive(pid) and not alive(sandbox_pid), 10, "the containers to die")
    assert not os.listdir(env.runc_state_dir)
    assert offline.leftover_files(set()) == []
    assert not os.path.exists(record.address)
    env.ids.clear()  # nothing left for the cleanup to delete
