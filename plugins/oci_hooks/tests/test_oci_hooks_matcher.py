"""Whether a hook applies (each condition, and their AND) and injection into stages."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from pycrio_oci_hooks.matcher import (
    annotation_pairs,
    command_of,
    has_bind_mounts,
    inject,
    matches,
    select,
)
from pycrio_oci_hooks.schema import HookDefinition, parse_hook


def hook(
    when: dict[str, Any], stages=("prestart",), name="a.json", **hook_fields
) -> HookDefinition:
    doc = {
        "version": "1.0.0",
        "hook": {"path": f"/usr/libexec/{name}", **hook_fields},
        "when": when,
        "stages": list(stages),
    }
    return parse_hook(json.dumps(doc), f"/hooks/{name}")


def spec(args=("/bin/sh", "-c", "true"), annotations=None, mounts=None) -> dict[str, Any]:
    out: dict[str, Any] = {"ociVersion": "1.0.2", "process": {"args": list(args)}}
    if annotations is not None:
        out["annotations"] = annotations
    if mounts is not None:
        out["mounts"] = mounts
    return out


BIND = {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]}
PROC = {"destination": "/proc", "type": "proc", "source": "proc"}


def applies(h: HookDefinition, s: dict[str, Any], container=None, sandbox=None) -> bool:
    return select([h], s, container, sandbox) == [h]


def test_always():
    assert applies(hook({"always": True}), spec())
    assert not applies(hook({"always": False}), spec())


def test_annotations_key_and_value_must_match_the_same_annotation():
    h = hook({"annotations": {r"^com\.example\.gpu$": "^(yes|true)$"}})
    assert applies(h, spec(annotations={"com.example.gpu": "true"}))
    assert not applies(h, spec(annotations={"com.example.gpu": "false"}))
    assert not applies(h, spec(annotations={"com.example.gpus": "true"}))
    # key of one annotation, value of another: no match
    assert not applies(h, spec(annotations={"com.example.gpu": "no", "other": "yes"}))
    assert not applies(h, spec())


def test_annotations_every_pair_must_match():
    h = hook({"annotations": {"^a$": "1", "^b$": "2"}})
    assert applies(h, spec(annotations={"a": "1", "b": "2", "c": "3"}))
    assert not applies(h, spec(annotations={"a": "1"}))


def test_annotation_regexes_are_searched_not_anchored():
    h = hook({"annotations": {"gpu": "fluid"}})
    assert applies(h, spec(annotations={"io.example.gpu.kind": "cfd-fluid-dynamics"}))


def test_annotations_of_container_and_pod_count():
    h = hook({"annotations": {"^io.pod.gpu$": "^1$"}})
    pod = SimpleNamespace(annotations={"io.pod.gpu": "1"})
    assert applies(h, spec(), sandbox=pod)
    container = SimpleNamespace(annotations={"io.pod.gpu": "1"}, mounts=[])
    assert applies(h, spec(), container=container)
    assert annotation_pairs(spec(annotations={"x": "1"}), container, pod) == [
        ("x", "1"),
        ("io.pod.gpu", "1"),
    ]


def test_commands_match_args0_against_any_entry():
    h = hook({"commands": [".*/init$", "^/usr/bin/systemd$"]})
    assert applies(h, spec(args=["/sbin/init"]))
    assert applies(h, spec(args=["/usr/bin/systemd", "--system"]))
    assert not applies(h, spec(args=["/bin/sh", "/sbin/init"]))  # only args[0]
    assert not applies(h, spec(args=[]))
    assert not applies(h, {"process": None})
    assert command_of({}) is None


def test_has_bind_mounts():
    h = hook({"hasBindMounts": True})
    assert applies(h, spec(mounts=[PROC, BIND]))
    by_option = {"destination": "/x", "type": "none", "source": "/srv", "options": ["bind"]}
    assert applies(h, spec(mounts=[by_option]))
    assert not applies(h, spec(mounts=[PROC]))
    assert not applies(h, spec())
    never = hook({"hasBindMounts": False})
    assert not applies(never, spec(mounts=[BIND]))
    assert not applies(never, spec(mounts=[PROC]))


def test_runtime_own_bind_mounts_are_not_requested_ones():
    pod = SimpleNamespace(run_dir="/run/pycrio/pods/p1", shm_path="/run/pycrio/shm/p1")
    container = SimpleNamespace(state_dir="/run/pycrio/ctrs/c1", bundle="/var/lib/b/c1", mounts=[])
    own = [
        {"destination": "/etc/hosts", "type": "bind", "source": "/run/pycrio/pods/p1/hosts"},
        {"destination": "/dev/shm", "type": "bind", "source": "/run/pycrio/shm/p1"},
        {"destination": "/etc/x", "type": "bind", "source": "/run/pycrio/ctrs/c1/x"},
    ]
    assert not has_bind_mounts(spec(mounts=own), container, pod)
    assert has_bind_mounts(spec(mounts=[*own, BIND]), container, pod)
    # a prefix that is not a parent directory does not count as the pod's own
    near = {"destination": "/y", "type": "bind", "source": "/run/pycrio/pods/p10/y"}
    assert has_bind_mounts(spec(mounts=[near]), container, pod)


def test_container_requested_mounts_are_authoritative_when_recorded():
    container = SimpleNamespace(mounts=[{"container_path": "/d", "host_path": "/srv/d"}])
    assert has_bind_mounts(spec(mounts=[]), container, None)


def test_conditions_are_anded():
    h = hook(
        {
            "always": True,
            "annotations": {"^a$": "^1$"},
            "commands": ["^/bin/sh$"],
            "hasBindMounts": True,
        }
    )
    good = spec(annotations={"a": "1"}, mounts=[BIND])
    assert applies(h, good)
    assert not applies(h, spec(annotations={"a": "2"}, mounts=[BIND]))
    assert not applies(h, spec(args=["/bin/bash"], annotations={"a": "1"}, mounts=[BIND]))
    assert not applies(h, spec(annotations={"a": "1"}, mounts=[PROC]))
    always_false = hook({"always": False, "commands": ["sh"]})
    assert not applies(always_false, spec())


@pytest.mark.parametrize(
    ("annotations", "command", "bind", "expected"),
    [
        ([("a", "1")], "/bin/sh", True, True),
        ([("a", "1")], "/bin/sh", False, False),
        ([("a", "1")], "/bin/ls", True, False),
        ([], "/bin/sh", True, False),
        ([("a", "1")], None, True, False),
    ],
)
def test_matches_combinations(annotations, command, bind, expected):
    h = hook({"annotations": {"^a$": "1"}, "commands": ["sh$"], "hasBindMounts": True})
    assert matches(h, annotations, command, bind) is expected


def test_inject_into_each_stage_in_order_keeping_existing_hooks():
    a = hook({"always": True}, stages=["prestart", "poststop"], name="01-a.json", args=["a"])
    b = hook({"always": True}, stages=["createRuntime", "prestart"], name="02-b.json", timeout=3)
    s = spec()
    s["hooks"] = {"prestart": [{"path": "/existing"}], "poststart": [{"path": "/other"}]}
    inject(s, [a, b])
    assert s["hooks"] == {
        "prestart": [
            {"path": "/existing"},
            {"path": "/usr/libexec/01-a.json", "args": ["a"]},
            {"path": "/usr/libexec/02-b.json", "timeout": 3},
        ],
        "poststart": [{"path": "/other"}],
        "poststop": [{"path": "/usr/libexec/01-a.json", "args": ["a"]}],
        "createRuntime": [{"path": "/usr/libexec/02-b.json", "timeout": 3}],
    }


def test_inject_creates_hooks_table_and_leaves_spec_alone_when_nothing_matches():
    s = spec()
    inject(s, [])
    assert "hooks" not in s
    inject(s, [hook({"always": True}, stages=["startContainer", "createContainer"])])
    assert set(s["hooks"]) == {"startContainer", "createContainer"}


def test_select_keeps_the_given_order():
    hooks = [hook({"always": True}, name=f"{n}.json") for n in ("b", "a", "c")]
    assert [h.name for h in select(hooks, spec())] == ["b.json", "a.json", "c.json"]
