"""Reading hook files: valid documents, and a precise message for each kind of error."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pycrio_oci_hooks.schema import (
    STAGES,
    HookError,
    executable_problem,
    load_hook,
    parse_hook,
)


def error_of(doc: Any) -> str:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(HookError) as info:
        parse_hook(text, "hook.json")
    return str(info.value)


def test_minimal_hook_reads(hook_doc, hook_bin):
    hook = parse_hook(json.dumps(hook_doc()), "/d/10-a.json")
    assert hook.path == hook_bin
    assert hook.name == "10-a.json"
    assert hook.always is True
    assert hook.stages == ("prestart",)
    assert hook.warnings == ()
    assert hook.oci_hook() == {"path": hook_bin}


def test_full_hook_reads(hook_doc, hook_bin):
    doc = hook_doc(
        hook={"path": hook_bin, "args": ["hook", "-v"], "env": ["A=1", "B="], "timeout": 5},
        when={
            "always": True,
            "annotations": {r"^io\.x$": "^y"},
            "commands": [".*/init$", "^sh$"],
            "hasBindMounts": True,
        },
        stages=list(STAGES),
    )
    hook = parse_hook(json.dumps(doc), "a.json")
    assert hook.oci_hook() == {
        "path": hook_bin,
        "args": ["hook", "-v"],
        "env": ["A=1", "B="],
        "timeout": 5,
    }
    assert [(k.source, v.source) for k, v in hook.annotations] == [(r"^io\.x$", "^y")]
    assert [c.source for c in hook.commands] == [".*/init$", "^sh$"]
    assert hook.has_bind_mounts is True
    assert hook.stages == STAGES
    assert "annotations" in hook.describe_when() and "commands" in hook.describe_when()


def test_oci_hook_returns_a_fresh_dict(hook_doc, hook_bin):
    hook = parse_hook(json.dumps(hook_doc(hook={"path": hook_bin, "args": ["a"]})), "a.json")
    hook.oci_hook()["args"].append("b")
    assert hook.oci_hook()["args"] == ["a"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"version": "2.0.0"},
            'hook.json: version: unsupported version "2.0.0" (expected "1.0.0")',
        ),
        ({"version": 1}, 'hook.json: version: unsupported version 1 (expected "1.0.0")'),
        ({"hook": "x"}, 'hook.json: hook: must be an object, got string "x"'),
        ({"hook": {}}, "hook.json: hook.path: missing required field"),
        ({"hook": {"path": 5}}, "hook.json: hook.path: must be a string, got number 5"),
        ({"hook": {"path": ""}}, "hook.json: hook.path: must not be empty"),
        (
            {"hook": {"path": "bin/hook"}},
            'hook.json: hook.path: must be an absolute path, got "bin/hook"',
        ),
        (
            {"hook": {"path": "/h", "args": "x"}},
            'hook.json: hook.args: must be an array of strings, got string "x"',
        ),
        (
            {"hook": {"path": "/h", "args": ["a", 2]}},
            "hook.json: hook.args[1]: must be a string, got number 2",
        ),
        (
            {"hook": {"path": "/h", "env": ["A=1", "NOEQUALS"]}},
            'hook.json: hook.env[1]: must be "NAME=value", got "NOEQUALS"',
        ),
        (
            {"hook": {"path": "/h", "env": ["=x"]}},
            'hook.json: hook.env[0]: must be "NAME=value", got "=x"',
        ),
        (
            {"hook": {"path": "/h", "timeout": 0}},
            "hook.json: hook.timeout: must be greater than zero, got 0",
        ),
        (
            {"hook": {"path": "/h", "timeout": -3}},
            "hook.json: hook.timeout: must be greater than zero, got -3",
        ),
        (
            {"hook": {"path": "/h", "timeout": 1.5}},
            "hook.json: hook.timeout: must be an integer (seconds), got number 1.5",
        ),
        (
            {"hook": {"path": "/h", "timeout": True}},
            "hook.json: hook.timeout: must be an integer (seconds), got boolean true",
        ),
        ({"when": []}, "hook.json: when: must be an object, got array []"),
        (
            {"when": {"always": "yes"}},
            'hook.json: when.always: must be a boolean, got string "yes"',
        ),
        (
            {"when": {"hasBindMounts": 1}},
            "hook.json: when.hasBindMounts: must be a boolean, got number 1",
        ),
        (
            {"when": {"annotations": ["a"]}},
            'hook.json: when.annotations: must be an object, got array ["a"]',
        ),
        (
            {"when": {"annotations": {"^io.x$": 1}}},
            'hook.json: when.annotations["^io.x$"]: must be a string (a regular expression), '
            "got number 1",
        ),
        (
            {"when": {"commands": "sh"}},
            'hook.json: when.commands: must be an array of strings, got string "sh"',
        ),
        (
            {"when": {"commands": ["sh", None]}},
            "hook.json: when.commands[1]: must be a string, got null",
        ),
        (
            {"stages": "prestart"},
            'hook.json: stages: must be an array of strings, got string "prestart"',
        ),
        ({"stages": [7]}, "hook.json: stages[0]: must be a string, got number 7"),
    ],
)
def test_type_and_value_errors_name_the_field(hook_doc, change, message):
    assert error_of(hook_doc(**change)) == message


def test_invalid_annotation_key_regex_names_the_key(hook_doc):
    message = error_of(hook_doc(when={"annotations": {"^io.x[$": ".*"}}))
    assert message.startswith(
        'hook.json: when.annotations["^io.x[$"]: invalid regular expression: '
    )
    assert "unterminated character set" in message


def test_invalid_annotation_value_regex_names_the_key(hook_doc):
    message = error_of(hook_doc(when={"annotations": {"^io.x$": "(a"}}))
    assert message.startswith('hook.json: when.annotations["^io.x$"]: invalid regular expression: ')
    assert "missing )" in message


def test_invalid_command_regex_names_the_index(hook_doc):
    message = error_of(hook_doc(when={"commands": ["ok", "*bad"]}))
    assert message.startswith("hook.json: when.commands[1]: invalid regular expression: ")


@pytest.mark.parametrize("field", ["version", "hook", "when", "stages"])
def test_missing_required_fields(hook_doc, field):
    doc = hook_doc()
    del doc[field]
    message = error_of(doc)
    assert message.startswith(f"hook.json: {field}: missing")


def test_legacy_0_1_0_file_is_recognised():
    message = error_of({"hook": "/usr/bin/x", "stages": ["prestart"], "cmds": [".*"]})
    assert "legacy 0.1.0 hook file" in message
    assert message.startswith("hook.json: version: missing;")


def test_when_without_a_condition(hook_doc):
    assert error_of(hook_doc(when={})).startswith("hook.json: when: no condition set")
    # empty annotations and commands are not conditions
    empty = hook_doc(when={"annotations": {}, "commands": []})
    assert error_of(empty).startswith("hook.json: when: no condition set")


def test_stages_errors(hook_doc):
    assert error_of(hook_doc(stages=[])) == (
        "hook.json: stages: must name at least one stage of " + ", ".join(STAGES)
    )
    message = error_of(hook_doc(stages=["prestart", "createruntime"]))
    assert message.startswith(
        'hook.json: stages[1]: unknown stage "createruntime" (did you mean "createRuntime"?)'
    )
    doc = hook_doc()
    doc["stage"] = doc.pop("stages")
    assert (
        error_of(doc)
        == 'hook.json: stages: missing required field (found "stage": the field is "stages")'
    )


def test_not_json_and_not_an_object():
    assert error_of('{"version": "1.0.0",').startswith("hook.json: invalid JSON: ")
    assert "(line 1, column" in error_of('{"version": "1.0.0",')
    assert error_of("[1]") == "hook.json: must be a JSON object, got array"
    with pytest.raises(HookError, match=r"^hook.json: not UTF-8 text"):
        parse_hook(b"\xff\xfe{}", "hook.json")


def test_error_parts_are_available_separately(hook_doc):
    with pytest.raises(HookError) as info:
        parse_hook(json.dumps(hook_doc(stages=["nope"])), "/etc/h/x.json")
    e = info.value
    assert e.file == "/etc/h/x.json"
    assert e.field == "stages[0]"
    assert e.detail.startswith('stages[0]: unknown stage "nope"')


def test_unknown_fields_are_warnings_with_suggestions(hook_doc):
    doc = hook_doc(when={"always": True, "command": ["sh"]}, extra=1)
    hook = parse_hook(json.dumps(doc), "a.json")
    assert 'when.command: unknown field, ignored (did you mean "commands"?)' in hook.warnings
    assert "extra: unknown field, ignored" in hook.warnings


def test_conditions_that_never_hold_and_duplicates_warn(hook_doc):
    doc = hook_doc(when={"always": False}, stages=["prestart", "prestart"])
    hook = parse_hook(json.dumps(doc), "a.json")
    assert hook.stages == ("prestart",)
    assert any("never matches" in w for w in hook.warnings)
    assert any("listed twice" in w for w in hook.warnings)


def test_load_hook_reads_a_file_and_reports_unreadable(tmp_path, hook_doc, write_hook):
    path = write_hook(tmp_path, "a.json", hook_doc())
    assert load_hook(path).file == path
    missing = os.fspath(tmp_path / "missing.json")
    with pytest.raises(HookError, match=r"missing.json: cannot read: No such file"):
        load_hook(missing)


def test_executable_problem(tmp_path, hook_bin):
    assert executable_problem(hook_bin) is None
    assert executable_problem(str(tmp_path / "nope")) == f"{tmp_path / 'nope'}: no such file"
    plain = tmp_path / "plain"
    plain.write_text("x")
    plain.chmod(0o644)
    assert executable_problem(str(plain)) == f"{plain}: not executable"
    assert executable_problem(str(tmp_path)) == f"{tmp_path}: not a regular file"
