"""Hooks directories: precedence by file name, broken files, order, live changes."""

from __future__ import annotations

import json
import logging
import os
import time

from pycrio_oci_hooks import directories as directories_mod
from pycrio_oci_hooks.directories import HookDirectories


def names(scan) -> list[str]:
    return [h.file for h in scan.hooks]


def test_later_directory_overrides_by_file_name(tmp_path, hook_doc, write_hook, hook_bin):
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    low = write_hook(usr, "10-x.json", hook_doc(stages=["prestart"]))
    only_low = write_hook(usr, "20-y.json", hook_doc())
    high = write_hook(etc, "10-x.json", hook_doc(stages=["poststop"]))
    dirs = HookDirectories([str(usr), str(etc)])
    scan = dirs.current()
    assert names(scan) == [high, only_low]
    assert scan.hooks[0].stages == ("poststop",)
    assert scan.masked == ((low, high),)
    os.unlink(high)
    scan = dirs.current()
    assert names(scan) == [low, only_low]
    assert scan.masked == ()


def test_order_is_by_lower_cased_file_name_across_directories(tmp_path, hook_doc, write_hook):
    a, b = tmp_path / "a", tmp_path / "b"
    files = [
        write_hook(b, "02-z.json", hook_doc()),
        write_hook(a, "01-B.json", hook_doc()),
        write_hook(b, "01-a.json", hook_doc()),
        write_hook(a, "10-c.json", hook_doc()),
    ]
    scan = HookDirectories([str(a), str(b)]).current()
    assert [h.name for h in scan.hooks] == ["01-a.json", "01-B.json", "02-z.json", "10-c.json"]
    assert sorted(names(scan)) == sorted(files)


def test_only_json_files_and_missing_directories(tmp_path, hook_doc, write_hook):
    d = tmp_path / "d"
    keep = write_hook(d, "a.json", hook_doc())
    write_hook(d, "b.json.bak", hook_doc())
    write_hook(d, "README", "not a hook")
    (d / "sub.json").mkdir()
    scan = HookDirectories([str(tmp_path / "missing"), str(d)]).current()
    assert names(scan) == [keep]
    assert scan.broken == ()


def test_broken_file_is_logged_and_skipped(tmp_path, hook_doc, write_hook, caplog):
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    good = write_hook(usr, "10-x.json", hook_doc())
    bad = write_hook(etc, "10-x.json", hook_doc(stages=["prestrat"]))
    other = write_hook(etc, "20-y.json", "{not json")
    dirs = HookDirectories([str(usr), str(etc)])
    with caplog.at_level(logging.WARNING, logger="pycrio.oci_hooks"):
        scan = dirs.current()
    # a broken file does not mask a valid one of the same name (as in containers/common)
    assert names(scan) == [good]
    assert [e.file for e in scan.broken] == [bad, other]
    messages = [r.getMessage() for r in caplog.records]
    assert any(bad in m and 'stages[0]: unknown stage "prestrat"' in m for m in messages)
    assert any(other in m and "invalid JSON" in m for m in messages)
    caplog.clear()
    dirs.current()  # re-read (the files are new, so "racy"), but not logged again
    dirs.current()
    assert [r for r in caplog.records if "skipping" in r.getMessage()] == []


def test_dangling_symlink_is_broken_not_fatal(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "gone.json").symlink_to(tmp_path / "nowhere.json")
    scan = HookDirectories([str(d)]).current()
    assert scan.hooks == ()
    assert "cannot read" in str(scan.broken[0])


def test_new_changed_and_removed_files_are_picked_up(tmp_path, hook_doc, write_hook):
    d = tmp_path / "d"
    d.mkdir()
    dirs = HookDirectories([str(d)])
    assert dirs.current().hooks == ()
    path = write_hook(d, "a.json", hook_doc(stages=["prestart"]))
    assert [h.stages for h in dirs.current().hooks] == [("prestart",)]
    write_hook(d, "a.json", hook_doc(stages=["poststop", "poststart"]))
    assert [h.stages for h in dirs.current().hooks] == [("poststop", "poststart")]
    os.unlink(path)
    assert dirs.current().hooks == ()


def test_a_rewrite_that_leaves_the_stat_unchanged_is_seen_while_racy(
    tmp_path, hook_doc, write_hook, monkeypatch
):
    """Two writes in one timestamp tick can leave the whole stat signature equal.

    The stat is frozen here to simulate that: a recently modified file is
    re-read anyway, and once it has settled the cached result is trusted.
    """
    d = tmp_path / "d"
    write_hook(d, "a.json", hook_doc(stages=["poststop"]))
    now = time.time_ns()
    frozen = (now, now, 100, 1, 1)
    real_list = HookDirectories._list

    def frozen_list(self):
        return [(i, name, p, frozen) for i, name, p, _ in real_list(self)]

    monkeypatch.setattr(HookDirectories, "_list", frozen_list)
    dirs = HookDirectories([str(d)])
    assert dirs.current().hooks[0].stages == ("poststop",)
    write_hook(d, "a.json", hook_doc(stages=["prestart"]))
    assert dirs.current().hooks[0].stages == ("prestart",)
    monkeypatch.setattr(directories_mod, "RACY_NS", 0)  # settled from now on
    dirs.current()
    write_hook(d, "a.json", hook_doc(stages=["poststart"]))
    assert dirs.current().hooks[0].stages == ("prestart",)  # trusted the (frozen) stat


def test_unchanged_files_are_not_reread(tmp_path, hook_doc, write_hook, monkeypatch):
    monkeypatch.setattr(directories_mod, "RACY_NS", 0)  # files written now count as settled
    d = tmp_path / "d"
    write_hook(d, "a.json", hook_doc())
    b = write_hook(d, "b.json", hook_doc())
    reads: list[str] = []
    real = directories_mod.load_hook

    def counting(path: str):
        reads.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(directories_mod, "load_hook", counting)
    dirs = HookDirectories([str(d)])
    first = dirs.current()
    assert dirs.current() is first
    assert sorted(reads) == ["a.json", "b.json"]
    with open(b, "w") as f:
        json.dump(hook_doc(stages=["poststop"]), f)
    dirs.current()
    assert sorted(reads) == ["a.json", "b.json", "b.json"]


def test_set_dirs_switches_directories(tmp_path, hook_doc, write_hook):
    one = write_hook(tmp_path / "one", "a.json", hook_doc())
    two = write_hook(tmp_path / "two", "b.json", hook_doc())
    dirs = HookDirectories([str(tmp_path / "one")])
    assert names(dirs.current()) == [one]
    dirs.set_dirs([str(tmp_path / "two")])
    assert dirs.dirs == (str(tmp_path / "two"),)
    assert names(dirs.current()) == [two]


def test_unreadable_directory_warns_once(tmp_path, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    dirs = HookDirectories([str(not_a_dir)])
    with caplog.at_level(logging.WARNING, logger="pycrio.oci_hooks"):
        dirs.current()
        dirs.current()
    warnings = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1
    assert str(not_a_dir) in warnings[0].getMessage()
