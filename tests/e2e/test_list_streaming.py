"""The streaming list calls (cri-api v0.36, CRIListStreaming) over the daemon's socket.

The stubs lack these calls, so the tests call them as the kubelet would: a
unary-stream call on the service's method path with the message classes that
pycrio.server.list_streaming builds. Each stream must carry exactly what the
matching List call returns.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import registry_env
from container_e2e import RUNNING, Pod, daemon_config, pod_config
from cri_api.v1 import api_pb2
from image_e2e import pull

from pycrio.server.list_streaming import CALLS_BY_METHOD, MESSAGES

pytestmark = pytest.mark.e2e


def stream(d, method: str, **request) -> list:
    """Call ``method`` and return its responses (a list of response messages)."""
    call = CALLS_BY_METHOD[method]
    rpc = d.channel().unary_stream(
        f"/runtime.v1.{call.service}/{method}",
        request_serializer=MESSAGES[call.request].SerializeToString,
        response_deserializer=MESSAGES[call.response].FromString,
    )
    return list(rpc(MESSAGES[call.request](**request), timeout=30))


def items(d, method: str, **request) -> list:
    """The items of every response of ``method``, in order."""
    field = CALLS_BY_METHOD[method].field
    return [item for response in stream(d, method, **request) for item in getattr(response, field)]


def test_stream_pod_sandboxes_matches_list(start_daemon, tmp_path: Path) -> None:
    d = start_daemon()
    rt = d.runtime()
    ids = []
    for name in ("one", "two", "three"):
        config = pod_config(name, tmp_path / "logs" / name)
        config.labels["tier"] = "odd" if name != "two" else "even"
        ids.append(rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=ids[1]))

    listed = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    streamed = items(d, "StreamPodSandboxes")
    assert sorted(p.id for p in streamed) == sorted(ids)
    # deterministic: a map field (labels) may be encoded in any order
    assert sorted(p.SerializeToString(deterministic=True) for p in streamed) == sorted(
        p.SerializeToString(deterministic=True) for p in listed
    )
    states = {p.id: p.state for p in streamed}
    assert states == {
        ids[0]: api_pb2.SANDBOX_READY,
        ids[1]: api_pb2.SANDBOX_NOTREADY,
        ids[2]: api_pb2.SANDBOX_READY,
    }

    filters = [
        api_pb2.PodSandboxFilter(label_selector={"tier": "odd"}),
        api_pb2.PodSandboxFilter(state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)),
        api_pb2.PodSandboxFilter(id=ids[1][:12]),
        api_pb2.PodSandboxFilter(id="0" * 64),
    ]
    expected = [{ids[0], ids[2]}, {ids[0], ids[2]}, {ids[1]}, set()]
    for flt, want in zip(filters, expected, strict=True):
        got = {p.id for p in items(d, "StreamPodSandboxes", filter=flt)}
        assert got == want == {p.id for p in rt.ListPodSandbox(
            api_pb2.ListPodSandboxRequest(filter=flt)).items}, flt  # fmt: skip
    # Nothing matches: the stream ends without a single response.
    assert stream(d, "StreamPodSandboxes", filter=filters[-1]) == []

    # No container yet: empty streams.
    assert stream(d, "StreamContainers") == []
    assert (
        stream(d, "StreamContainers", filter=api_pb2.ContainerFilter(pod_sandbox_id=ids[0])) == []
    )
    assert stream(d, "StreamContainerStats") == []

    stats = items(d, "StreamPodSandboxStats")
    listed_stats = rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()).stats
    assert sorted(s.attributes.id for s in stats) == sorted(s.attributes.id for s in listed_stats)
    one = items(d, "StreamPodSandboxStats", filter=api_pb2.PodSandboxStatsFilter(id=ids[2]))
    assert [s.attributes.id for s in one] == [ids[2]]

    try:
        listed_metrics = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest())
    except grpc.RpcError as err:
        with pytest.raises(grpc.RpcError) as streamed_err:
            stream(d, "StreamPodSandboxMetrics")
        assert streamed_err.value.code() == err.code()
    else:
        metrics = items(d, "StreamPodSandboxMetrics")
        assert sorted(m.pod_sandbox_id for m in metrics) == sorted(
            m.pod_sandbox_id for m in listed_metrics.pod_metrics
        )


def test_stream_images_and_containers(
    start_daemon, tmp_path: Path, registry, images: registry_env.TestImages
) -> None:
    d = start_daemon(config=daemon_config(tmp_path / "conf", registry.host))
    assert stream(d, "StreamImages") == []  # empty store: no response at all

    image_ref = pull(d, images.busybox.name)
    listed = d.images().ListImages(api_pb2.ListImagesRequest()).images
    streamed = items(d, "StreamImages")
    assert [i.id for i in streamed] == [i.id for i in listed] == [image_ref]
    assert streamed[0] == listed[0]  # compared as messages: map fields have no wire order
    by_name = api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=images.busybox.name))
    assert [i.id for i in items(d, "StreamImages", filter=by_name)] == [image_ref]
    missing = api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=f"{registry.host}/no/such:1"))
    assert items(d, "StreamImages", filter=missing) == []

    pod = Pod(d, pod_config("streamed", tmp_path / "logs"))
    running = pod.run("runs", images.busybox.name, command=["sleep", "300"])
    created = pod.create(pod.container_config("waits", images.busybox.name, command=["true"]))

    rt = d.runtime()
    listed_ctrs = rt.ListContainers(api_pb2.ListContainersRequest()).containers
    streamed_ctrs = items(d, "StreamContainers")
    assert sorted(c.id for c in streamed_ctrs) == sorted([running, created])
    assert sorted(c.SerializeToString(deterministic=True) for c in streamed_ctrs) == sorted(
        c.SerializeToString(deterministic=True) for c in listed_ctrs
    )
    only_running = api_pb2.ContainerFilter(
        state=api_pb2.ContainerStateValue(state=RUNNING), pod_sandbox_id=pod.id
    )
    assert [c.id for c in items(d, "StreamContainers", filter=only_running)] == [running]
    by_label = api_pb2.ContainerFilter(label_selector={"no-such": "label"})
    assert stream(d, "StreamContainers", filter=by_label) == []

    listed_stats = rt.ListContainerStats(api_pb2.ListContainerStatsRequest()).stats
    stats = items(d, "StreamContainerStats")
    assert sorted(s.attributes.id for s in stats) == sorted(s.attributes.id for s in listed_stats)
    one = items(d, "StreamContainerStats", filter=api_pb2.ContainerStatsFilter(id=running))
    assert [s.attributes.id for s in one] == [running]
    pod.remove()
