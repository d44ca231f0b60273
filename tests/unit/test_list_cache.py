"""Encoded list entries: the response equals one built message by message."""

from __future__ import annotations

from cri_api.v1 import api_pb2

from pycrio.cri.list_cache import EncodedEntries


def pod(i: int, state: int, labels: dict[str, str] | None = None) -> api_pb2.PodSandbox:
    return api_pb2.PodSandbox(
        id=f"{i:064x}",
        metadata=api_pb2.PodSandboxMetadata(name=f"p{i}", namespace="ns", uid=f"u{i}"),
        state=state,
        created_at=1_700_000_000_000_000_000 + i,
        labels=labels or {"app": "x" * i},  # long ones too: multi-byte lengths
        runtime_handler="runc",
    )


def test_response_equals_the_message_built_directly() -> None:
    cache = EncodedEntries(1)
    pods = [pod(i, api_pb2.SANDBOX_READY) for i in range(300)]
    entries = [cache.entry(p.id, p.state, lambda p=p: p) for p in pods]
    got = cache.response(api_pb2.ListPodSandboxResponse, entries)
    assert got == api_pb2.ListPodSandboxResponse(items=pods)


def test_an_entry_is_built_again_only_when_its_version_changes() -> None:
    cache = EncodedEntries(1)
    builds: list[int] = []

    def build(state: int) -> api_pb2.PodSandbox:
        builds.append(state)
        return pod(1, state)

    ready, notready = api_pb2.SANDBOX_READY, api_pb2.SANDBOX_NOTREADY
    first = cache.entry("a", ready, lambda: build(ready))
    assert cache.entry("a", ready, lambda: build(ready)) is first
    changed = cache.entry("a", notready, lambda: build(notready))
    assert builds == [ready, notready]
    got = cache.response(api_pb2.ListPodSandboxResponse, [changed])
    assert [p.state for p in got.items] == [notready]


def test_entries_of_gone_objects_are_forgotten() -> None:
    cache = EncodedEntries(1)
    for i in range(200):
        cache.entry(str(i), 0, lambda i=i: pod(i, 0))
    cache.prune(lambda: ["5", "6"], 2)
    builds = []
    cache.entry("5", 0, lambda: builds.append(5) or pod(5, 0))
    cache.entry("7", 0, lambda: builds.append(7) or pod(7, 0))
    assert builds == [7]  # 5 was kept, 7 was forgotten
    cache.prune(lambda: [], 1000)  # not many more than live: nothing to do
    cache.entry("5", 0, lambda: builds.append(55) or pod(5, 0))
    assert builds == [7]


def test_unfiltered_list_is_answered_again_until_the_generation_moves() -> None:
    from types import SimpleNamespace

    cache = EncodedEntries(1)
    objects = [SimpleNamespace(id=f"{i:064x}", state="ready") for i in range(3)]
    builds: list[str] = []

    def build(o: SimpleNamespace) -> api_pb2.PodSandbox:
        builds.append(o.id)
        return api_pb2.PodSandbox(id=o.id, state=api_pb2.SANDBOX_READY)

    first = cache.list_response(api_pb2.ListPodSandboxResponse, 7, objects, build)
    assert [p.id for p in first.items] == [o.id for o in objects]
    assert cache.list_response(api_pb2.ListPodSandboxResponse, 7, objects, build) is first
    filtered = cache.list_response(
        api_pb2.ListPodSandboxResponse, 7, objects, build, keep=lambda o: o is objects[1]
    )
    assert [p.id for p in filtered.items] == [objects[1].id]
    objects[2].state = "notready"
    again = cache.list_response(api_pb2.ListPodSandboxResponse, 8, objects[1:], build)
    assert again is not first and [p.id for p in again.items] == [o.id for o in objects[1:]]
    assert builds == [o.id for o in objects] + [objects[2].id]  # only the changed one again
