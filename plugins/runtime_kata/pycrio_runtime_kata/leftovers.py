"""What the shim v2 driver left behind, found offline for ``pycrio check`` and ``pycrio wipe``.

The driver keeps, per container (see :mod:`.driver`):

- ``<state_dir>/containers/<id>.json``: its record (task id, pod, the shim's
  socket, the bundle link, the IO directory);
- ``<run_dir>/bundles/<task id>``: the link the shim knows the bundle by;
- ``<run_dir>/io/<id>/``: the container's stdio FIFOs and their state;
- ``<run_dir>/exec/``: FIFO directories of execs in progress (none offline);
- a :mod:`.fifo_holder` process per container (pid and start time in the record);

and per pod a shim process, ``<runtime_path> -namespace <ns> -id <first
task> -address <run_dir>/containerd.sock``, serving a socket (the record's
``address``, under /run/containerd/s/ for containerd's shims).

A shim is identified by its argv: the very ``-address`` argument only this
driver passes (a path in its private run dir) and our runtime binary as
argv[0]; it is left over when none of the pods and containers it serves is
known. Its containers are removed with the shim binary's own ``delete``
(``runc delete --force`` for the runc shim), run in each task's bundle link
like after a shim crash. What a VM runtime's shim leaves when it is
SIGKILLed (Kata's hypervisor process) is not something this driver can
identify; Kata's ``delete`` stops its sandbox where it can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection
from typing import Any

import psutil

from pycrio.errors import CRIError
from pycrio.kernel.interfaces import LeftoverProcess
from pycrio.linux import processes
from pycrio_runtime_kata import fifo_holder, shim_binary
from pycrio_runtime_kata.records import ContainerRecord


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _served_ids(records: list[ContainerRecord], task_id: str) -> set[str]:
    """Every pod and container id served by the shim whose first task is ``task_id``."""
    ids = {task_id}
    first = [r for r in records if r.task_id == task_id]
    addresses = {r.address for r in first if r.address}
    for r in records:
        if r.task_id == task_id or (r.address and r.address in addresses):
            ids |= {r.container_id, r.pod_id, r.task_id}
    return ids


def shim_processes(driver: Any) -> list[tuple[int, str]]:
    """(pid, first task id) of every running shim this driver started."""
    address = driver.shim_address
    try:
        binary = os.path.realpath(driver.runtime_path)
    except CRIError:
        return []
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if not argv or os.path.realpath(argv[0]) != binary:
            continue
        if not processes.has_args(proc.pid, "-address", address):
            continue
        task_id = argv[argv.index("-id") + 1] if "-id" in argv[:-1] else ""
        if processes.alive(proc.pid):
            found.append((proc.pid, task_id))
    return found


def leftover_processes(driver: Any, known_ids: Collection[str]) -> list[LeftoverProcess]:
    """The pods' shims none of whose pods or containers the core knows."""
    records = driver.records.all()
    out = []
    for pid, task_id in shim_processes(driver):
        served = _served_ids(records, task_id)
        if served & set(known_ids):
            continue
        pods = sorted(
            {r.pod_id for r in records if r.container_id in served or r.task_id in served}
        )
        out.append(LeftoverProcess(pid, f"shim of pod {pods[0] if pods else task_id}"))
    for r in records:
        if r.container_id in known_ids:
            continue
        if fifo_holder.is_holder(r.holder_pid, r.holder_start):
            out.append(LeftoverProcess(r.holder_pid, f"output FIFO holder of {r.container_id}"))
        elif pid := fifo_holder.find(r.io_dir or os.path.join(driver.io_root, r.container_id)):
            # started, but the daemon was killed before it recorded the pid
            out.append(LeftoverProcess(pid, f"output FIFO holder of {r.container_id}"))
    return out


def _files_of(record: ContainerRecord) -> list[str]:
    paths = [record.address] if record.address.startswith("/") else []
    paths += [record.bundle, record.io_dir]
    return [p for p in paths if p and os.path.lexists(p)]


def leftover_files(driver: Any, known_ids: Collection[str]) -> list[str]:
    """Records, bundle links, IO directories and shim sockets that serve no known id."""
    known = set(known_ids)
    records = driver.records.all()
    paths: list[str] = []
    kept_links, kept_io = set(), set()
    for r in records:
        if r.container_id in known:
            kept_links.add(os.path.basename(r.bundle))
            kept_io.add(os.path.basename(r.io_dir))
            continue
        paths.append(driver.records.path(r.container_id))
        paths += _files_of(r)
    for name in _listdir(driver.links_dir):
        path = os.path.join(driver.links_dir, name)
        if name not in kept_links and path not in paths:
            paths.append(path)
    for name in _listdir(driver.io_root):
        path = os.path.join(driver.io_root, name)
        if name not in kept_io and name not in known and path not in paths:
            paths.append(path)
    # an exec's FIFOs live while the daemon waits for it: none does offline
    paths += [os.path.join(driver.exec_dir, name) for name in _listdir(driver.exec_dir)]
    return paths


def remove_leftovers(driver: Any, known_ids: Collection[str]) -> list[str]:
    """``<shim> delete`` for each unknown container's task, then its files."""
    known = set(known_ids)
    failed: list[str] = []
    for r in driver.records.all():
        if r.container_id in known:
            continue
        if os.path.isdir(r.bundle):
            try:
                shim_binary.delete(driver.command(), r.task_id, r.bundle, driver.command_timeout)
            except CRIError as e:
                if "no such file" not in e.message and "not exist" not in e.message:
                    failed.append(f"task {r.task_id} of container {r.container_id}: {e.message}")
    for path in leftover_files(driver, known):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        except OSError as e:
            failed.append(f"{path}: {e.strerror}")
    return failed
