"""The one mountinfo parser, on bytes as the kernel writes them."""

from __future__ import annotations

import os

import pytest

from pycrio.linux import mountinfo

SAMPLE = (
    b"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    b"30 22 0:25 / /sys/fs/cgroup/pids rw,nosuid shared:9 - cgroup cgroup rw,pids\n"
    b"31 22 0:26 /sub /with\\040space rw master:3 - tmpfs tmp\\040fs rw,size=4k\n"
    b"32 22 0:27 / /tab\\011and\\012newline rw - tmpfs tmpfs rw\n"
    b"33 22 0:28 / /caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac rw shared:4 master:2 - tmpfs tmpfs rw\n"
    b"34 22 0:29 / /back\\134slash\\040\xc3\xa9 rw - tmpfs tmpfs rw\n"
    b"35 22 0:30 / /no-optional rw - proc proc\n"
    b"garbage line\n"
    b"\n"
)


def test_fields_of_a_line() -> None:
    m = mountinfo.parse(SAMPLE)[2]
    assert (m.mount_id, m.parent_id, m.root, m.mount_point) == (31, 22, "/sub", "/with space")
    assert (m.fstype, m.source, m.super_options) == ("tmpfs", "tmp fs", ("rw", "size=4k"))
    assert m.options == ("rw",) and m.optional == ("master:3",)
    assert m.slave and not m.shared


@pytest.mark.parametrize(
    ("index", "path"),
    [
        (2, "/with space"),
        (3, "/tab\tand\nnewline"),
        (4, "/café/日本"),
        (5, "/back\\slash é"),
    ],
)
def test_escapes_and_non_ascii_paths(index: int, path: str) -> None:
    assert mountinfo.parse(SAMPLE)[index].mount_point == path


def test_text_and_bytes_parse_alike_and_bad_lines_are_skipped() -> None:
    as_bytes = mountinfo.parse(SAMPLE)
    assert mountinfo.parse(os.fsdecode(SAMPLE)) == as_bytes
    assert len(as_bytes) == 7
    assert as_bytes[6].super_options == () and as_bytes[6].fstype == "proc"
    assert mountinfo.parse(b"1 2 3 4 5 6 - \n") == []


def test_non_utf8_bytes_round_trip_as_os_paths() -> None:
    (m,) = mountinfo.parse(b"40 1 0:1 / /bad\xff\\040name rw - tmpfs t rw\n")
    assert os.fsencode(m.mount_point) == b"/bad\xff name"


def test_mount_points_under_are_deepest_and_latest_first() -> None:
    table = mountinfo.parse(
        b"1 0 0:1 / /r rw - tmpfs t rw\n"
        b"2 1 0:2 / /r/a rw - tmpfs t rw\n"
        b"3 2 0:3 / /r/a/b rw - tmpfs t rw\n"
        b"4 1 0:4 / /r/a rw - tmpfs t rw\n"
        b"5 1 0:5 / /rx rw - tmpfs t rw\n"
    )
    assert mountinfo.mount_points_under(["/r/a"], table) == ["/r/a/b", "/r/a", "/r/a"]
    assert mountinfo.mount_of(table, "/r/a/c").mount_id == 4  # type: ignore[union-attr]
    assert mountinfo.mount_of(table, "/rxy") is None
    assert mountinfo.is_mount_point("/rx", table) and not mountinfo.is_mount_point("/r/x", table)
