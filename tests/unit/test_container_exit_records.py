"""The container service's exit bookkeeping, with no runtime: records in memory and on disk."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from cri_api.v1 import api_pb2

from pycrio.config import defaults
from pycrio.container.record import EXITED, RUNNING, ContainerRecord, ContainerStore
from pycrio.cri.containers import ContainerService
from pycrio.kernel.interfaces import ExitStatus
from pycrio.kernel.kernel import build_kernel


def service(tmp_path: Path) -> ContainerService:
    config = defaults()
    config.data["root"] = str(tmp_path / "root")
    config.data["runroot"] = str(tmp_path / "run")
    kernel = build_kernel(config, lambda kernel: [], found=[])
    sandboxes = SimpleNamespace(store=SimpleNamespace(get=lambda _id: None))
    svc = ContainerService(kernel, None, sandboxes)
    svc.store = ContainerStore(str(tmp_path / "containers"))
    return svc


def running(cid: str) -> ContainerRecord:
    return ContainerRecord(
        id=cid, name=cid, attempt=0, sandbox_id="p", reservation=f"r-{cid}", image="i",
        image_id="", image_ref="", runtime_handler="runc", created_at=1,
        state=RUNNING, runtime_created=True, started_at=2,
    )  # fmt: skip


def on_disk(tmp_path: Path, cid: str) -> dict | None:
    path = tmp_path / "containers" / f"{cid}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_an_exit_is_recorded_and_wakes_a_stop(tmp_path: Path) -> None:
    svc = service(tmp_path)
    record = running("a")
    svc.store.save(record)
    svc.exit_reported("a", ExitStatus(exit_code=3, finished_at=5))
    assert svc._exit_event("a").is_set()
    assert (record.state, record.exit_code, record.reason) == (EXITED, 3, "Error")
    saved = on_disk(tmp_path, "a")
    assert saved is not None
    assert (saved["state"], saved["exit_code"], saved["finished_at"]) == (EXITED, 3, 5)
    svc.exit_reported("a", ExitStatus(exit_code=0, finished_at=9))  # a second report
    assert (record.exit_code, on_disk(tmp_path, "a")["exit_code"]) == (3, 3)


def test_an_exit_written_after_the_remove_does_not_bring_the_record_back(
    tmp_path: Path,
) -> None:
    """StopContainer returns before the exit's write; RemoveContainer may delete first."""
    svc = service(tmp_path)
    record = running("b")
    svc.store.save(record)
    record.state = EXITED  # what exit_reported did in memory before the write
    with svc._save_lock("b"):  # what remove() does
        svc.store.delete("b")
    svc._save(record, durable=False, unless_removed=True)
    assert on_disk(tmp_path, "b") is None
    assert svc.store.get("b") is None
    svc._save(record, durable=False)  # a writer holding the container's lock still writes
    assert on_disk(tmp_path, "b") is not None


def test_a_list_made_before_an_exit_is_not_served_before_its_write(tmp_path: Path) -> None:
    """StopContainer returns before the record's write: ListContainers must already say EXITED."""
    svc = service(tmp_path)
    svc.store.save(running("c"))

    def listed() -> list[int]:
        response = svc.cri_list_containers(api_pb2.ListContainersRequest(), ctx=None)
        return [c.state for c in response.containers]

    assert listed() == [api_pb2.CONTAINER_RUNNING]
    writes: list[list[int]] = []
    svc._save = lambda record, **_kw: writes.append(listed())  # type: ignore[method-assign]
    svc.exit_reported("c", ExitStatus(exit_code=0, finished_at=5))
    assert writes == [[api_pb2.CONTAINER_EXITED]]  # as the write begins, the list has moved
