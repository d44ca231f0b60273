"""The adaptation against a test plugin over a real socket, without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from nri_stub import NRIStub

from pycrio_nri import adaptation as adaptation_mod
from pycrio_nri import api
from pycrio_nri.adaptation import Adaptation, Settings


def _adaptation(tmp_path: Path, pods: int, containers: int, updates: list) -> Adaptation:
    def snapshot():
        return (
            [api.PodSandbox(id=f"pod{i}", name="p" * 200) for i in range(pods)],
            [api.Container(id=f"ctr{i}", pod_sandbox_id="pod0") for i in range(containers)],
        )

    settings = Settings(
        socket_path=str(tmp_path / "nri.sock"),
        plugin_dir=str(tmp_path / "none"),
        registration_timeout=2,
        request_timeout=2,
    )
    a = Adaptation(settings, snapshot, lambda cid, res: updates.append(cid), lambda cid, why: None)
    a.start()
    return a


def _wait(a: Adaptation, name: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(p.name == name for p in a.connected()):
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} was not admitted")


def test_large_state_is_synchronized_in_pieces(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(adaptation_mod, "SYNC_CHUNK", 2000)
    updates: list[str] = []
    a = _adaptation(tmp_path, pods=30, containers=50, updates=updates)
    stub = NRIStub(
        "sync",
        "10",
        handlers={
            "Synchronize": lambda req: api.SynchronizeResponse(
                more=req.more,
                update=[] if req.more else [api.ContainerUpdate(container_id="ctr1")],
            )
        },
    ).connect(str(tmp_path / "nri.sock"))
    _wait(a, "10-sync")
    syncs = stub.of("Synchronize")
    assert len(syncs) > 2
    assert [s.more for s in syncs] == [True] * (len(syncs) - 1) + [False]
    assert [p.id for s in syncs for p in s.pods] == [f"pod{i}" for i in range(30)]
    assert [c.id for s in syncs for c in s.containers] == [f"ctr{i}" for i in range(50)]
    assert updates == ["ctr1"]  # the updates of the last answer are applied
    stub.close()
    a.stop()


def test_a_plugin_that_cannot_take_split_syncs_is_dropped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(adaptation_mod, "SYNC_CHUNK", 2000)
    a = _adaptation(tmp_path, pods=30, containers=0, updates=[])
    old = NRIStub(
        "old", "10", handlers={"Synchronize": lambda req: api.SynchronizeResponse(more=False)}
    ).connect(str(tmp_path / "nri.sock"))
    old.wait_for(lambda got: any(m == "Synchronize" for m, _ in got))
    old.wait_for(lambda got: old.closed, timeout=10)
    assert a.connected() == []
    a.stop()


@pytest.mark.parametrize(
    ("name", "idx", "why"), [("bad name!", "10", "invalid plugin name"), ("ok", "1x", "index")]
)
def test_bad_registrations_are_refused(tmp_path: Path, name: str, idx: str, why: str) -> None:
    a = _adaptation(tmp_path, 0, 0, [])
    stub = NRIStub(name, idx)
    with pytest.raises(Exception, match=why):
        stub.connect(str(tmp_path / "nri.sock"))
    assert a.connected() == []
    a.stop()


def test_socket_is_private_and_a_live_one_is_not_stolen(tmp_path: Path) -> None:
    a = _adaptation(tmp_path, 0, 0, [])
    assert (tmp_path / "nri.sock").stat().st_mode & 0o777 == 0o600
    b = _adaptation(tmp_path, 0, 0, [])  # same path: the first keeps it
    NRIStub("first", "10").connect(str(tmp_path / "nri.sock"))
    _wait(a, "10-first")
    assert b.connected() == []
    b.stop()
    a.stop()


def test_plugins_older_than_per_event_calls_get_state_change(tmp_path: Path) -> None:
    from nri_stub import Refuse

    a = _adaptation(tmp_path, 0, 0, [])

    def unimplemented(req):
        raise Refuse("unknown method", code=12)

    old = NRIStub(
        "old", "10", handlers={"RunPodSandbox": unimplemented, "RemoveContainer": unimplemented}
    ).connect(str(tmp_path / "nri.sock"))
    _wait(a, "10-old")
    pod = api.PodSandbox(id="p1", name="pod")
    a.notify("RUN_POD_SANDBOX", "RunPodSandbox", api.RunPodSandboxRequest(pod=pod), refusable=True)
    ctr = api.Container(id="c1", name="ctr")
    a.notify(
        "REMOVE_CONTAINER", "RemoveContainer", api.RemoveContainerRequest(pod=pod, container=ctr)
    )
    changes = old.of("StateChange")
    assert [(c.event, c.pod.id, c.container.id) for c in changes] == [
        (api.Event.Value("RUN_POD_SANDBOX"), "p1", ""),
        (api.Event.Value("REMOVE_CONTAINER"), "p1", "c1"),
    ]
    # once known to be old, it is not asked the new way again
    assert old.methods().count("RemoveContainer") == 0
    old.close()
    a.stop()


def test_timeouts_registration_and_the_plugins_own_request_timeout(tmp_path: Path) -> None:
    import threading
    import time

    a = _adaptation(tmp_path, 0, 0, [])
    a.settings.registration_timeout = 0.3
    silent = NRIStub("silent", "10").connect(str(tmp_path / "nri.sock"), register=False)
    silent.wait_for(lambda got: silent.closed, timeout=5)  # never registered: hung up on

    release = threading.Event()

    def configure(req):
        return api.ConfigureResponse(request_timeout=300)  # milliseconds

    slow = NRIStub(
        "slow",
        "20",
        handlers={"Configure": configure, "RunPodSandbox": lambda req: release.wait(10) and None},
    ).connect(str(tmp_path / "nri.sock"))
    _wait(a, "20-slow")
    started = time.monotonic()
    a.notify("RUN_POD_SANDBOX", "RunPodSandbox", api.RunPodSandboxRequest(), refusable=True)
    assert time.monotonic() - started < 1.5  # its 0.3 s, not the runtime's 2 s
    assert a.connected() == []
    release.set()
    slow.wait_for(lambda got: slow.closed)
    a.stop()


def test_plugins_are_told_to_shut_down(tmp_path: Path) -> None:
    a = _adaptation(tmp_path, 0, 0, [])
    stub = NRIStub("bye", "10").connect(str(tmp_path / "nri.sock"))
    _wait(a, "10-bye")
    a.stop()
    stub.wait_for(lambda got: got[-1][0] == "Shutdown")
    stub.wait_for(lambda got: stub.closed)
    assert not (tmp_path / "nri.sock").exists()
