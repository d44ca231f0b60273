"""The subreaper collects orphans at once and leaves the daemon's own children alone.

Runs in a child interpreter: becoming a subreaper changes the process for good.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, sys, time
from pycrio import reaper

assert reaper.set_subreaper()
# An orphan: a child forks a grandchild and exits; the grandchild, re-parented
# to us, exits later and must be reaped by reap_orphans.
r, w = os.pipe()
child = os.fork()
if child == 0:
    if os.fork() == 0:
        os.read(r, 1)
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
own = reaper.popen(["sleep", "0.3"])
os.write(w, b"x")
deadline = time.monotonic() + 5
reaped = []
while time.monotonic() < deadline and not reaped:
    time.sleep(0.05)
    reaped = reaper.reap_orphans()
assert len(reaped) == 1 and reaped[0] not in (child, own.pid), reaped
# our own child keeps its exit status for its waiter
time.sleep(0.5)
assert reaper.reap_orphans() == []
assert own.wait(timeout=5) == 0
res = reaper.run(["sh", "-c", "exit 7"], timeout=5)
assert res.returncode == 7
print("ok")
"""


def run_script(script: str) -> None:
    """Run ``script`` in a child interpreter (a subreaper stays one); it prints "ok"."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_orphans_are_reaped_and_own_children_are_not() -> None:
    run_script(SCRIPT)


def test_run_times_out_and_kills() -> None:
    import time

    import pytest

    from pycrio import reaper

    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        reaper.run(["sleep", "30"], timeout=0.2)
    assert time.monotonic() - started < 5


def test_spawns_do_not_wait_behind_the_process_scan(monkeypatch) -> None:
    """The /proc scan (slow with thousands of processes) holds no lock spawns need."""
    import threading
    import time

    from pycrio import reaper

    scanning, finish = threading.Event(), threading.Event()

    def slow_scan() -> list[int]:
        scanning.set()
        finish.wait(5)
        return []

    monkeypatch.setattr(reaper, "_any_zombie", lambda: True)  # a zombie to look for
    monkeypatch.setattr(reaper, "_zombie_children", slow_scan)
    scanner = threading.Thread(target=reaper.reap_orphans)
    scanner.start()
    assert scanning.wait(5)
    try:
        started = time.monotonic()
        proc = reaper.popen(["true"])
        waited = time.monotonic() - started
    finally:
        finish.set()
        scanner.join(10)
    assert proc.wait(timeout=10) == 0
    reaper.release(proc.pid)
    assert waited < 2, f"popen waited {waited:.1f}s for the scan"


def test_zombie_children_are_found_from_the_children_files() -> None:
    import os
    import time

    from pycrio import reaper

    assert reaper._children() is not None, "kernel without /proc/<pid>/task/<tid>/children"
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while pid not in reaper._zombie_children():
            assert time.monotonic() < deadline, "the exited child never showed as a zombie"
            time.sleep(0.01)
    finally:
        os.waitpid(pid, 0)
    assert pid not in reaper._zombie_children()


HOLD_SCRIPT = r"""
import os, time
from pycrio import reaper

assert not reaper.is_subreaper()
assert reaper.set_subreaper() and reaper.is_subreaper()
# As `runc exec --detach`: a child starts a grandchild that exits at once, prints
# its pid and exits; the grandchild's zombie is re-parented to us.
with reaper.holding_orphans():
    # the grandchild outlives its parent shell, which would otherwise reap it itself
    script = "(sh -c 'sleep 0.1; exit 5' & echo $!)"
    out = reaper.run(["sh", "-c", script], timeout=5, capture_output=True)
    pid = int(out.stdout)
    time.sleep(0.3)
    assert open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[:2] == ["Z", str(os.getpid())]
    assert reaper.reap_orphans() == []  # held: its exit status stays for its owner
    reaper.keep_off(pid)
assert reaper.reap_orphans() == []  # registered: still left alone
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 5
reaper.release(pid)
print("ok")
"""


def test_held_orphans_keep_their_exit_status() -> None:
    run_script(HOLD_SCRIPT)


def test_the_zombie_check_reaps_nothing_and_sees_only_exited_children() -> None:
    import os
    import time

    from pycrio import reaper

    live = subprocess.Popen(["sleep", "30"])
    try:
        assert not reaper._any_zombie()  # a running child is no zombie
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        deadline = time.monotonic() + 5
        while not reaper._any_zombie():
            assert time.monotonic() < deadline, "the exited child never showed"
            time.sleep(0.01)
        assert reaper._any_zombie()  # asked twice: the check did not reap it
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 7  # its status is still its owner's
        assert not reaper._any_zombie()
    finally:
        live.kill()
        live.wait()


THREAD_SCRIPT = r"""
import os, signal, time
from pycrio import reaper

assert reaper.set_subreaper()
thread = reaper.Reaper()
thread.start()
# our own child exits first and is left unreaped for a while (a slow caller):
own = reaper.popen(["true"])
time.sleep(0.2)
assert open(f"/proc/{own.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
# then an orphan is re-parented to us and exits: the thread must reap it even
# though the first zombie it sees is one it must leave alone
go_r, go_w = os.pipe()
pid_r, pid_w = os.pipe()
child = os.fork()
if child == 0:
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        os._exit(0)
    os.write(pid_w, str(pid).encode().ljust(16))
    os._exit(0)
os.waitpid(child, 0)
orphan = int(os.read(pid_r, 16))
os.write(go_w, b"x")
deadline = time.monotonic() + 5
while os.path.exists(f"/proc/{orphan}"):
    assert time.monotonic() < deadline, "the orphan was not reaped"
    time.sleep(0.01)
assert own.wait(timeout=5) == 0  # its exit status stayed for its caller
reaper.release(own.pid)
thread.stop()
print("ok")
"""


def test_the_reaper_thread_reaps_an_orphan_behind_an_own_zombie() -> None:
    run_script(THREAD_SCRIPT)
