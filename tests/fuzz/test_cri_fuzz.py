"""Fuzz every CRI RPC through the daemon's socket, against a real pod and container.

For each RPC of RuntimeService and ImageService (from the descriptor), a
valid baseline request is merged with a sparse hostile message drawn from the
request's descriptor (tests/support/proto_strategies.py). Each answer must be
OK or a documented status code, never INTERNAL or UNKNOWN, within its deadline,
and the daemon must answer Version afterwards. The module ends by removing
everything through the CRI and checking that no mount, process, cgroup, pod
or container file, nor daemon thread or fd, is left. Examples are
derandomized (same inputs every run); ``PYCRIO_FUZZ=nightly`` runs 20x as many
random ones. Failures found so far are plain tests in test_cri_regressions.py.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import cri_fuzz
import proto_strategies
import pytest
from cri_api.v1 import api_pb2
from daemon import DaemonProcess
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from leaks import host_leaks

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

#: Examples per RPC in ``make test``. Calls that take the target pod or
#: container away (and so cost a re-creation each) get fewer.
DEFAULT_EXAMPLES = 60
EXAMPLES = {
    "RunPodSandbox": 25,
    "StopPodSandbox": 6,
    "RemovePodSandbox": 6,
    "CreateContainer": 50,
    "StartContainer": 10,
    "StopContainer": 8,
    "RemoveContainer": 8,
    "PullImage": 150,
    "RemoveImage": 8,
    "GetContainerEvents": 6,
}


def _id(param: tuple[str, str]) -> str:
    return param[1]


@pytest.mark.parametrize("rpc", cri_fuzz.methods(), ids=_id)
def test_rpc_answers_only_documented_codes(target: cri_fuzz.Target, rpc: tuple[str, str]) -> None:
    service, method = rpc
    descriptor = cri_fuzz.request_class(service, method).DESCRIPTOR
    slow: list[tuple[float, str]] = []
    codes: Counter[str] = Counter()

    @fuzz_settings(EXAMPLES.get(method, DEFAULT_EXAMPLES))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        target.ensure()
        hostile = data.draw(
            proto_strategies.hostile_requests(descriptor, cri_fuzz.hints(target)), label="hostile"
        )
        request = cri_fuzz.baseline(method, target)
        request.MergeFrom(hostile)
        out = cri_fuzz.call(target, service, method, request)
        codes[out.code.name] += 1
        cri_fuzz.trace(method, request, out)
        made = cri_fuzz.created_by(method, out)
        target.created.update(made)
        problem = cri_fuzz.verdict(method, out, request)
        if method == "CreateContainer" and made and problem is None:
            # a fuzzed config that was accepted must also start, or fail cleanly
            start = api_pb2.StartContainerRequest(container_id=made[0])
            started = cri_fuzz.call(target, service, "StartContainer", start)
            codes[f"then start {started.code.name}"] += 1
            cri_fuzz.trace("StartContainer", request, started)
            problem = cri_fuzz.verdict("StartContainer", started, request)
        # the daemon still answers, whatever the call did
        target.rt.Version(api_pb2.VersionRequest(), timeout=10)
        for extra in made:
            if extra not in (target.pod_id, target.container_id):
                _remove(target, method, extra)
        if out.seconds > 10:
            slow.append((out.seconds, str(request)[:200]))
        assert problem is None, problem

    run()
    print(f"{method}: {dict(codes)}", end=" ")
    assert len(slow) <= 2, f"{method}: calls slower than 10 s: {slow}"


def _remove(t: cri_fuzz.Target, method: str, made: str) -> None:
    if method == "RunPodSandbox":
        t.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=made), timeout=60)
    else:
        t.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=made), timeout=60)


def test_nothing_is_left_once_everything_is_removed(
    target: cri_fuzz.Target, crio: DaemonProcess
) -> None:
    """Runs last in this module: the fuzzed calls left no mount, process, cgroup or file."""
    target.forget_extras()
    target.rt.RemovePodSandbox(
        api_pb2.RemovePodSandboxRequest(pod_sandbox_id=target.pod_id), timeout=60
    )
    root, runroot = Path(crio.tmp / "root"), Path(crio.tmp / "runroot")
    deadline = time.monotonic() + 15
    while True:
        leaks = host_leaks(root, runroot, target.created, daemon_running=True, pids=target.pids)
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert leaks == [], "\n".join(leaks)
    # Threads and fds come back to what one pod and container needed, give or
    # take the pool threads grpc keeps.
    threads0, fds0 = target.baseline_usage
    deadline = time.monotonic() + 15
    while True:
        threads, fds = cri_fuzz.threads_and_fds(crio.proc.pid, target.registry_port)
        if (threads <= threads0 + 8 and fds <= fds0 + 8) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert threads <= threads0 + 8, (threads0, threads)
    assert fds <= fds0 + 8, f"{fds0} -> {fds}: " + " ".join(cri_fuzz.fd_targets(crio.proc.pid))
    print(f"ids created: {len(target.created)}, target re-created {target.recreated} times")
