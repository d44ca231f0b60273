"""``pycrio hooks validate`` and ``pycrio hooks list``, called through main(argv)."""

from __future__ import annotations

import pytest

from pycrio_oci_hooks.cli import main


def test_validate_ok_files_exit_0(tmp_path, hook_doc, write_hook, capsys):
    a = write_hook(tmp_path, "a.json", hook_doc())
    b = write_hook(tmp_path, "b.json", hook_doc(stages=["poststop"]))
    assert main(["validate", a, b]) == 0
    assert capsys.readouterr().out == f"{a}: ok\n{b}: ok\n"


def test_validate_reports_each_bad_file_and_exits_1(tmp_path, hook_doc, write_hook, capsys):
    good = write_hook(tmp_path, "good.json", hook_doc())
    bad_re = write_hook(tmp_path, "bad.json", hook_doc(when={"annotations": {"^io.x$": "(a"}}))
    not_json = write_hook(tmp_path, "broken.json", "{")
    missing = str(tmp_path / "missing.json")
    assert main(["validate", good, bad_re, not_json, missing]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good}: ok"
    assert lines[1].startswith(
        f'{bad_re}: error: when.annotations["^io.x$"]: invalid regular expression: missing )'
    )
    assert lines[2].startswith(f"{not_json}: error: invalid JSON: ")
    assert lines[3] == f"{missing}: error: cannot read: No such file or directory"
    assert len(lines) == 4


def test_validate_checks_the_hook_binary_unless_told_not_to(tmp_path, hook_doc, write_hook, capsys):
    path = write_hook(tmp_path, "a.json", hook_doc(hook={"path": "/nonexistent/hook"}))
    assert main(["validate", path]) == 1
    assert capsys.readouterr().out == f"{path}: error: hook.path: /nonexistent/hook: no such file\n"
    assert main(["validate", "--no-path-check", path]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_validate_prints_warnings_after_ok(tmp_path, hook_doc, write_hook, capsys):
    path = write_hook(tmp_path, "a.json", hook_doc(when={"always": True, "comands": ["x"]}))
    assert main(["validate", path]) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok\n"
        f'{path}: warning: when.comands: unknown field, ignored (did you mean "commands"?)\n'
    )


def test_validate_requires_a_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    assert "pycrio hooks validate" in capsys.readouterr().err


def test_list_prints_effective_masked_and_broken(tmp_path, hook_doc, write_hook, hook_bin, capsys):
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    low = write_hook(usr, "10-x.json", hook_doc())
    high = write_hook(
        etc,
        "10-x.json",
        hook_doc(when={"commands": ["^/sbin/init$"]}, stages=["prestart", "poststop"]),
    )
    other = write_hook(usr, "20-y.json", hook_doc(hook={"path": "/nonexistent/y"}))
    broken = write_hook(etc, "30-z.json", hook_doc(stages=[]))
    assert main(["list", "--dir", str(usr), "--dir", str(etc)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f'{high}: stages=prestart,poststop when=commands ["^/sbin/init$"] path={hook_bin}',
        f"{other}: stages=prestart when=always path=/nonexistent/y "
        "(not injected: /nonexistent/y: no such file)",
        f"{low}: masked by {high}",
        f"{broken}: error: stages: must name at least one stage of prestart, createRuntime, "
        "createContainer, startContainer, poststart, poststop",
    ]


def test_list_of_clean_directories_exits_0(tmp_path, hook_doc, write_hook, capsys):
    path = write_hook(tmp_path, "a.json", hook_doc())
    assert main(["list", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: stages=prestart when=always")
    assert main(["list", "--dir", str(tmp_path / "empty")]) == 0
    assert "no hooks in" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "usage: pycrio hooks" in capsys.readouterr().err
