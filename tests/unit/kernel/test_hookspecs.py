from __future__ import annotations

from pathlib import Path

from cri_api.v1 import api_pb2

from pycrio.kernel.hookspecs import CRI_HOOKS, UNIMPLEMENTED, CRISpecs, unimplemented_message
from pycrio.kernel.kernel import new_plugin_manager
from pycrio.server.dispatch import SERVICES, hook_name
from pycrio.server.list_streaming import CALLS


def test_one_firstresult_hook_per_rpc_of_both_services() -> None:
    rpcs = {
        (service, m.name)
        for service in SERVICES
        for m in api_pb2.DESCRIPTOR.services_by_name[service].methods
    }
    assert len(rpcs) == 35
    # The streaming list calls of cri-api v0.36, which the stubs lack.
    streaming = {(c.service, c.method) for c in CALLS}
    assert len(streaming) == 6 and not streaming & rpcs
    rpcs |= streaming
    assert set(CRI_HOOKS.values()) == rpcs
    pm = new_plugin_manager()
    for service, method in rpcs:
        name = hook_name(method)
        assert CRI_HOOKS[name] == (service, method)
        caller = getattr(pm.hook, name)
        assert caller.spec.opts["firstresult"], name
        assert list(caller.spec.argnames) == ["request", "ctx"], name
    assert hasattr(CRISpecs, "cri_get_container_events")


def test_hook_names_are_snake_case_of_the_rpc() -> None:
    assert hook_name("RunPodSandbox") == "cri_run_pod_sandbox"
    assert hook_name("ExecSync") == "cri_exec_sync"
    assert hook_name("ListPodSandboxStats") == "cri_list_pod_sandbox_stats"
    assert hook_name("GetContainerEvents") == "cri_get_container_events"
    assert hook_name("StreamPodSandboxes") == "cri_stream_pod_sandboxes"


def test_extension_hooks_exist() -> None:
    pm = new_plugin_manager()
    for name in (
        "pycrio_startup",
        "pycrio_shutdown",
        "pycrio_config_reload",
        "pycrio_status_conditions",
        "pycrio_adjust_container_spec",
        "pycrio_adjust_sandbox_spec",
        "pycrio_container_event",
        "pycrio_sandbox_event",
        "pycrio_sandbox_starting",
    ):
        assert getattr(pm.hook, name).spec is not None, name


def test_every_cri_hook_is_answered_by_the_core_or_listed_as_unimplemented(
    tmp_path: Path,
) -> None:
    from pycrio.config import defaults
    from pycrio.cri import core_plugins
    from pycrio.kernel.kernel import CORE_PREFIX, build_kernel

    cfg = defaults()
    cfg.data["root"], cfg.data["runroot"] = str(tmp_path / "root"), str(tmp_path / "run")
    kernel = build_kernel(cfg, core_plugins, found=[])
    answered = {
        CRI_HOOKS[name][1]
        for name in CRI_HOOKS
        for impl in getattr(kernel.pm.hook, name).get_hookimpls()
        if impl.plugin_name.startswith(CORE_PREFIX) and not (impl.wrapper or impl.hookwrapper)
    }
    methods = {method for _service, method in CRI_HOOKS.values()}
    assert sorted(methods - answered) == sorted(UNIMPLEMENTED)
    assert not answered & set(UNIMPLEMENTED)


def test_the_documented_unimplemented_list_is_the_one_in_the_code() -> None:
    text = (Path(__file__).parents[3] / "docs" / "kubelet.md").read_text()
    start, end = "<!-- BEGIN UNIMPLEMENTED -->\n", "<!-- END UNIMPLEMENTED -->"
    documented = text[text.index(start) + len(start) : text.index(end)]
    assert documented == "".join(f"- `{m}`: {why}\n" for m, why in sorted(UNIMPLEMENTED.items()))


def test_unimplemented_message_gives_the_reason() -> None:
    assert unimplemented_message("CheckpointContainer", "1.0") == (
        "CheckpointContainer is not implemented by pycrio 1.0: "
        + UNIMPLEMENTED["CheckpointContainer"]
    )
    assert unimplemented_message("Nope", "1.0") == "Nope is not implemented by pycrio 1.0"
