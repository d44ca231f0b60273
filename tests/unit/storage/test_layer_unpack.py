"""Layer unpacking: metadata fidelity, whiteout modes, and above all containment in the root.

Archives are built in memory; every hostile one is unpacked next to an
"outside" directory that must be byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pycrio.errors import InvalidArgument
from pycrio.storage import layer_unpack
from pycrio.storage.layer_unpack import (
    MAX_SYMLINKS,
    OVERLAY_OPAQUE_XATTR,
    EntryKind,
    LayerSummary,
    UnsafeLayer,
    Whiteout,
    WhiteoutMode,
    entry_kind,
    entry_times_ns,
    entry_xattrs,
    hardlink_target,
    is_aufs_metadata,
    normalize_name,
    resolve_in_root,
    unpack_layer,
    whiteout_of,
)

MTIME = 1_600_000_000
IS_ROOT = os.geteuid() == 0

# ---------------------------------------------------------------- archive builders

Entry = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, mode: int, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = kw.pop("mtime", MTIME)  # type: ignore[assignment]
    info.uid = kw.pop("uid", 0)  # type: ignore[assignment]
    info.gid = kw.pop("gid", 0)  # type: ignore[assignment]
    info.pax_headers = kw.pop("pax", {})  # type: ignore[assignment]
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def F(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return info, data


def D(name: str, mode: int = 0o755, **kw: object) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, **kw), None


def S(name: str, target: str, **kw: object) -> Entry:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw), None


def H(name: str, target: str, **kw: object) -> Entry:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw), None


def C(name: str, major: int, minor: int, mode: int = 0o666, **kw: object) -> Entry:
    return _info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor, **kw), None


def B(name: str, major: int, minor: int, mode: int = 0o660, **kw: object) -> Entry:
    return _info(name, tarfile.BLKTYPE, mode, devmajor=major, devminor=minor, **kw), None


def P(name: str, mode: int = 0o600, **kw: object) -> Entry:
    return _info(name, tarfile.FIFOTYPE, mode, **kw), None


def build(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack(root: Path, *entries: Entry, mode: str = "overlay") -> LayerSummary:
    return unpack_layer(io.BytesIO(build(*entries)), root, mode)


# ---------------------------------------------------------------- containment check


def _snapshot(top: Path, exclude: Path) -> dict[str, tuple[object, ...]]:
    """Everything under `top` except `exclude`, down to content hashes and link counts."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != exclude]
        for name in dirnames + filenames:
            path = here / name
            st = path.lstat()
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            key = str(path.relative_to(top))
            state[key] = (st.st_mode, st.st_nlink, st.st_uid, st.st_size, st.st_mtime_ns, content)
    return state


@dataclass
class Sandbox:
    """A target root next to a populated `outside` directory that must stay untouched."""

    top: Path
    root: Path = field(init=False)
    outside: Path = field(init=False)
    before: dict[str, tuple[object, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.top / "root"
        self.outside = self.top / "outside"
        self.root.mkdir()
        (self.outside / "sub").mkdir(parents=True)
        (self.outside / "secret").write_bytes(b"secret")
        (self.outside / "sub" / "file").write_bytes(b"file")
        self.before = _snapshot(self.top, self.root)

    def assert_outside_untouched(self) -> None:
        assert _snapshot(self.top, self.root) == self.before

    def inside(self, escaped: Path | str) -> Path:
        """Where chroot semantics put a path that names an absolute location."""
        return self.root / str(escaped).lstrip("/")


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    # Unpacking sets owners and creates device nodes: pycrio always runs as root.
    if not IS_ROOT:
        pytest.skip("needs root: owners, device nodes and trusted.* xattrs")
    return Sandbox(tmp_path)


# ================================================================ pure decisions


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b", ("a", "b")),
        ("./a//b/", ("a", "b")),
        ("a/./b", ("a", "b")),
        ("a/../b", ("b",)),
        ("a/b/../../c", ("c",)),
        (".", ()),
        ("./", ()),
        ("", ()),
        ("..foo/bar..", ("..foo", "bar..")),
        ("a\\..\\b", ("a\\..\\b",)),  # backslashes are not separators here
    ],
)
def test_normalize_name(name: str, expected: tuple[str, ...]) -> None:
    assert normalize_name(name) == expected


@pytest.mark.parametrize(
    "name",
    ["/abs", "//abs", "/", "..", "../evil", "./../evil", "a/../../evil", "a/b/../../../c", "a\0b"],
)
def test_normalize_name_rejects_escapes(name: str) -> None:
    with pytest.raises(UnsafeLayer) as info:
        normalize_name(name)
    assert repr(name) in info.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b", None),
        (".wh.foo", Whiteout((), "foo")),
        ("a/b/.wh.c", Whiteout(("a", "b"), "c")),
        ("a/.wh..hidden", Whiteout(("a",), ".hidden")),
        (".wh..wh..opq", Whiteout((), None)),
        ("a/.wh..wh..opq", Whiteout(("a",), None)),
        ("a/.wh.x/y", None),  # only the last component can be a whiteout
    ],
)
def test_whiteout_of(name: str, expected: Whiteout | None) -> None:
    assert whiteout_of(normalize_name(name)) == expected


def test_whiteout_opaque_property() -> None:
    assert Whiteout(("a",), None).opaque
    assert not Whiteout(("a",), "b").opaque


@pytest.mark.parametrize("name", [".wh.", "a/.wh..", "a/.wh..."])
def test_whiteout_of_refuses_dot_names(name: str) -> None:
    with pytest.raises(UnsafeLayer):
        whiteout_of(normalize_name(name))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".wh..wh.plnk", True),
        (".wh..wh.plnk/123.456", True),
        (".wh..wh.aufs", True),
        (".wh..wh..opq", False),
        ("a/.wh..wh.plnk", False),
        ("usr/bin", False),
        ("", False),
    ],
)
def test_is_aufs_metadata(name: str, expected: bool) -> None:
    assert is_aufs_metadata(normalize_name(name)) is expected


@pytest.mark.parametrize(
    ("linkname", "expected"),
    [("etc/shadow", ("etc", "shadow")), ("./bin/../bin/sh", ("bin", "sh"))],
)
def test_hardlink_target(linkname: str, expected: tuple[str, ...]) -> None:
    assert hardlink_target(linkname) == expected


@pytest.mark.parametrize("linkname", ["/etc/shadow", "../x", "a/../../x", "", ".", "./"])
def test_hardlink_target_rejects(linkname: str) -> None:
    with pytest.raises(UnsafeLayer, match="hard link"):
        hardlink_target(linkname, "entry")


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (F("f"), EntryKind.FILE),
        (D("d"), EntryKind.DIR),
        (S("s", "x"), EntryKind.SYMLINK),
        (H("h", "x"), EntryKind.HARDLINK),
        (C("c", 1, 3), EntryKind.CHAR),
        (B("b", 7, 0), EntryKind.BLOCK),
        (P("p"), EntryKind.FIFO),
    ],
)
def test_entry_kind(entry: Entry, kind: EntryKind) -> None:
    assert entry_kind(entry[0]) is kind


@pytest.mark.parametrize("type_", [tarfile.CONTTYPE, tarfile.AREGTYPE, tarfile.GNUTYPE_SPARSE])
def test_entry_kind_regular_variants(type_: bytes) -> None:
    assert entry_kind(_info("f", type_, 0o644)) is EntryKind.FILE


def test_entry_kind_refuses_unknown_types() -> None:
    with pytest.raises(InvalidArgument, match="unsupported tar entry type"):
        entry_kind(_info("vol", b"V", 0o644))


def test_entry_xattrs_binary_round_trip_and_overlay_filter() -> None:
    binary = b"\x01\x00\x00\x02\xff\xfe"
    info, _ = F(
        "f",
        pax={
            "SCHILY.xattr.user.comment": "héllo",
            "SCHILY.xattr.trusted.bin": binary.decode("utf-8", "surrogateescape"),
            "SCHILY.xattr.trusted.overlay.redirect": "/etc",
            "SCHILY.xattr.trusted.overlay.opaque": "y",
            "SCHILY.xattr.user.overlay.opaque": "y",
            "comment": "not an xattr",
        },
    )
    # Round-trip through a real archive so tarfile's own decoding is exercised.
    with tarfile.open(fileobj=io.BytesIO(build((info, b""))), mode="r|") as tar:
        parsed = tar.next()
    assert parsed is not None
    assert entry_xattrs(parsed) == {"user.comment": "héllo".encode(), "trusted.bin": binary}


def test_entry_times_ns_prefers_pax_precision() -> None:
    info, _ = F("f", pax={"mtime": "1600000000.123456789", "atime": "1500000000.5"})
    with tarfile.open(fileobj=io.BytesIO(build((info, b""))), mode="r|") as tar:
        parsed = tar.next()
    assert parsed is not None
    assert entry_times_ns(parsed) == (1_500_000_000_500_000_000, 1_600_000_000_123_456_789)


def test_entry_times_ns_whole_seconds() -> None:
    assert entry_times_ns(F("f", mtime=42)[0]) == (42_000_000_000, 42_000_000_000)


def fake_fs(links: dict[str, str]) -> Callable[[tuple[str, ...]], str | None]:
    """readlink over a dict of symlinks keyed by their resolved path."""

    def readlink(path: tuple[str, ...]) -> str | None:
        return links.get("/".join(path))

    return readlink


@pytest.mark.parametrize(
    ("links", "path", "expected"),
    [
        ({}, "a/b/c", "a/b/c"),
        ({"a": "x"}, "a/b", "x/b"),
        ({"a": "/etc"}, "a/passwd", "etc/passwd"),
        ({"a": "../../../../x"}, "a/f", "x/f"),
        ({"d/a": "../y"}, "d/a/f", "y/f"),
        ({"d/a": "/"}, "d/a/f", "f"),
        ({"a": "b", "b": "c/d", "c": "/real"}, "a/f", "real/d/f"),
        ({"up": ".."}, "up/up/up/x", "x"),
        ({"a": "./b/./"}, "a/f", "b/f"),
        ({"d/l": "."}, "d/l/l/l/f", "d/f"),
    ],
)
def test_resolve_in_root_stays_inside(links: dict[str, str], path: str, expected: str) -> None:
    resolved = resolve_in_root(tuple(path.split("/")), fake_fs(links))
    assert resolved == tuple(p for p in expected.split("/") if p)
    assert ".." not in resolved


@pytest.mark.parametrize(
    "links",
    [
        {"a": "a"},
        {"a": "b", "b": "a"},
        {"a": "/a"},
        {f"l{i}": f"l{i + 1}" for i in range(MAX_SYMLINKS + 1)} | {f"l{MAX_SYMLINKS + 1}": "end"},
    ],
    ids=["self", "pair", "absolute-self", "too-long-chain"],
)
def test_resolve_in_root_refuses_loops(links: dict[str, str]) -> None:
    start = "l0" if "l0" in links else "a"
    with pytest.raises(UnsafeLayer, match="too many levels"):
        resolve_in_root((start, "x"), fake_fs(links))


def test_resolve_in_root_allows_a_chain_at_the_limit() -> None:
    links = {f"l{i}": f"l{i + 1}" for i in range(MAX_SYMLINKS)}
    assert resolve_in_root(("l0", "x"), fake_fs(links)) == (f"l{MAX_SYMLINKS}", "x")


def test_whiteout_mode_accepts_vfs_alias() -> None:
    assert WhiteoutMode("vfs") is WhiteoutMode.APPLY
    assert WhiteoutMode("overlay") is WhiteoutMode.OVERLAY
    with pytest.raises(ValueError):
        WhiteoutMode("aufs")


# ================================================================ filesystem: fidelity


def test_unpacks_every_entry_type_with_metadata(box: Sandbox) -> None:
    summary = unpack(
        box.root,
        D("etc", mode=0o755),
        F("etc/hostname", b"pycrio\n", mode=0o640, uid=1234, gid=5678, mtime=1_500_000_000),
        F("bin/su", b"\x7fELF", mode=0o4755),
        F("bin/wall", b"wall", mode=0o2755, gid=5),
        D("tmp", mode=0o1777),
        S("bin/sh", "busybox", uid=42, gid=43, mtime=1_400_000_000),
        H("bin/su-again", "bin/su"),
        C("dev/null", 1, 3, mode=0o666),
        B("dev/loop0", 7, 0, mode=0o660, gid=6),
        P("run/initctl", mode=0o600),
    )
    root = box.root
    hostname = (root / "etc/hostname").lstat()
    assert (root / "etc/hostname").read_bytes() == b"pycrio\n"
    assert stat.S_IMODE(hostname.st_mode) == 0o640
    assert (hostname.st_uid, hostname.st_gid) == (1234, 5678)
    assert hostname.st_mtime_ns == 1_500_000_000 * 10**9
    assert stat.S_IMODE((root / "bin/su").lstat().st_mode) == 0o4755
    assert stat.S_IMODE((root / "bin/wall").lstat().st_mode) == 0o2755
    assert stat.S_IMODE((root / "tmp").lstat().st_mode) == 0o1777
    sh = (root / "bin/sh").lstat()
    assert stat.S_ISLNK(sh.st_mode)
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (sh.st_uid, sh.st_gid) == (42, 43)
    assert sh.st_mtime_ns == 1_400_000_000 * 10**9  # set without following the link
    assert (root / "bin/su-again").lstat().st_ino == (root / "bin/su").lstat().st_ino
    null = (root / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    loop = (root / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and loop.st_gid == 6
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    assert stat.S_ISFIFO((root / "run/initctl").lstat().st_mode)
    assert summary == LayerSummary(entries=10, bytes=len(b"pycrio\n") + 4 + 4)
    box.assert_outside_untouched()


def test_directory_metadata_survives_its_children(box: Sandbox) -> None:
    unpack(
        box.root,
        D("ro", mode=0o555, mtime=1_000_000_000),
        F("ro/inside", b"x", mtime=1_700_000_000),
        D("ro/sub", mode=0o500, mtime=1_100_000_000),
        F("ro/sub/deeper", b"y"),
    )
    ro = (box.root / "ro").lstat()
    assert stat.S_IMODE(ro.st_mode) == 0o555
    assert ro.st_mtime_ns == 1_000_000_000 * 10**9
    sub = (box.root / "ro/sub").lstat()
    assert stat.S_IMODE(sub.st_mode) == 0o500
    assert sub.st_mtime_ns == 1_100_000_000 * 10**9
    assert (box.root / "ro/sub/deeper").read_bytes() == b"y"


def test_pax_nanosecond_mtime(box: Sandbox) -> None:
    unpack(box.root, F("f", b"x", pax={"mtime": "1600000000.123456789"}))
    assert (box.root / "f").lstat().st_mtime_ns == 1_600_000_000_123_456_789


def test_implicit_parents_are_created_0755(box: Sandbox) -> None:
    old = os.umask(0o077)
    try:
        unpack(box.root, F("a/b/c", b"deep"))
    finally:
        os.umask(old)
    assert (box.root / "a/b/c").read_bytes() == b"deep"
    assert stat.S_IMODE((box.root / "a").lstat().st_mode) == 0o755
    assert stat.S_IMODE((box.root / "a/b").lstat().st_mode) == 0o755


def test_root_entry_is_ignored(box: Sandbox) -> None:
    box.root.chmod(0o711)
    unpack(box.root, D(".", mode=0o777, mtime=5), D("./", mode=0o700), F("./x", b"x"))
    assert stat.S_IMODE(box.root.lstat().st_mode) == 0o711
    assert (box.root / "x").read_bytes() == b"x"


def test_root_entry_that_is_not_a_directory_is_refused(box: Sandbox) -> None:
    with pytest.raises(UnsafeLayer, match="must be a directory"):
        unpack(box.root, F(".", b"x"))


def test_xattrs_on_files_dirs_and_symlinks(box: Sandbox) -> None:
    binary = b"\x00\xff\x10"
    xattr = "SCHILY.xattr."
    unpack(
        box.root,
        D("d", pax={xattr + "user.dir": "on-dir"}),
        F(
            "d/f",
            b"x",
            pax={
                xattr + "user.file": "on-file",
                xattr + "trusted.bin": binary.decode("utf-8", "surrogateescape"),
            },
        ),
        S("d/link", "/nowhere", pax={xattr + "trusted.link": "on-link"}),
        D("forged", pax={xattr + OVERLAY_OPAQUE_XATTR: "y"}),
    )
    assert os.getxattr(box.root / "d", "user.dir") == b"on-dir"
    assert os.getxattr(box.root / "d/f", "user.file") == b"on-file"
    assert os.getxattr(box.root / "d/f", "trusted.bin") == binary
    assert os.getxattr(box.root / "d/link", "trusted.link", follow_symlinks=False) == b"on-link"
    # A layer cannot make itself opaque through a raw xattr, only through .wh..wh..opq.
    assert OVERLAY_OPAQUE_XATTR not in os.listxattr(box.root / "forged")


def test_existing_file_is_replaced_not_written_through(box: Sandbox) -> None:
    # A hard link shares its inode with a lower file: writing into it would change both.
    unpack(box.root, F("orig", b"lower"), H("alias", "orig"), mode="apply")
    unpack(box.root, F("alias", b"upper"), mode="apply")
    assert (box.root / "orig").read_bytes() == b"lower"
    assert (box.root / "alias").read_bytes() == b"upper"


def test_directory_over_directory_merges(box: Sandbox) -> None:
    unpack(box.root, D("d", mode=0o755), F("d/lower", b"l"), mode="apply")
    unpack(box.root, D("d", mode=0o700), F("d/upper", b"u"), mode="apply")
    assert sorted(os.listdir(box.root / "d")) == ["lower", "upper"]
    assert stat.S_IMODE((box.root / "d").lstat().st_mode) == 0o700


def test_file_replaces_directory_and_directory_replaces_file(box: Sandbox) -> None:
    unpack(box.root, D("a"), F("a/child", b"c"), F("b", b"file"), mode="apply")
    unpack(box.root, F("a", b"now a file"), D("b"), F("b/x", b"x"), mode="apply")
    assert (box.root / "a").read_bytes() == b"now a file"
    assert (box.root / "b/x").read_bytes() == b"x"


def test_hardlink_to_missing_target_is_invalid(box: Sandbox) -> None:
    with pytest.raises(InvalidArgument, match="cannot hard link"):
        unpack(box.root, H("h", "does/not/exist"))


def test_hardlink_to_directory_is_invalid(box: Sandbox) -> None:
    with pytest.raises(InvalidArgument, match="cannot hard link"):
        unpack(box.root, D("d"), H("h", "d"))


def test_parent_that_is_a_file_is_invalid(box: Sandbox) -> None:
    with pytest.raises(InvalidArgument, match="not a directory"):
        unpack(box.root, F("f", b"x"), F("f/child", b"y"))


def test_unsupported_entry_type_is_invalid(box: Sandbox) -> None:
    with pytest.raises(InvalidArgument, match="unsupported tar entry type"):
        unpack(box.root, (_info("label", b"V", 0o644), None))


def test_corrupt_and_truncated_tars_are_invalid(box: Sandbox) -> None:
    good = build(F("big", b"z" * 20000))
    with pytest.raises(InvalidArgument, match="corrupt layer tar"):
        unpack_layer(io.BytesIO(good[:5000]), box.root)
    with pytest.raises(InvalidArgument, match="corrupt layer tar"):
        unpack_layer(io.BytesIO(b"\x01" * 1024), box.root)


def test_empty_archive_unpacks_nothing(box: Sandbox) -> None:
    assert unpack(box.root) == LayerSummary(0, 0)
    assert list(box.root.iterdir()) == []


# ================================================================ filesystem: security


@pytest.mark.parametrize("name", ["../evil", "./../evil", "a/../../evil", "../root-sibling/x"])
def test_dotdot_names_are_refused(box: Sandbox, name: str) -> None:
    with pytest.raises(UnsafeLayer, match="escapes"):
        unpack(box.root, F(name, b"pwned"))
    assert not (box.top / "evil").exists()
    box.assert_outside_untouched()


def test_absolute_names_are_refused(box: Sandbox) -> None:
    host_path = Path(f"/pycrio-test-{uuid.uuid4().hex}")
    try:
        with pytest.raises(UnsafeLayer, match="absolute"):
            unpack(box.root, F(str(host_path), b"pwned"))
        assert not host_path.exists()
    finally:
        host_path.unlink(missing_ok=True)
    box.assert_outside_untouched()


def test_write_through_absolute_symlink_lands_inside_root(box: Sandbox) -> None:
    unpack(box.root, S("a", str(box.outside)), F("a/secret", b"pwned"), F("a/new", b"new"))
    box.assert_outside_untouched()
    assert (box.inside(box.outside) / "secret").read_bytes() == b"pwned"
    assert (box.inside(box.outside) / "new").read_bytes() == b"new"
    assert os.readlink(box.root / "a") == str(box.outside)  # the symlink itself is kept


def test_write_through_relative_escaping_symlink_lands_inside_root(box: Sandbox) -> None:
    # From <root>/a, the kernel would resolve ../outside to the real sibling directory.
    unpack(box.root, S("a", "../outside"), F("a/secret", b"pwned"))
    box.assert_outside_untouched()
    assert (box.root / "outside/secret").read_bytes() == b"pwned"


def test_write_through_symlink_to_etc_stays_in_root(box: Sandbox) -> None:
    name = f"pycrio-test-{uuid.uuid4().hex}"
    try:
        unpack(box.root, S("a", "/etc"), F(f"a/{name}", b"pwned"))
        assert not Path("/etc", name).exists()
        assert (box.root / "etc" / name).read_bytes() == b"pwned"
    finally:
        Path("/etc", name).unlink(missing_ok=True)


def test_walk_refuses_symlinks_even_if_resolution_missed_them(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a symlink to appear after resolution (a race, a bug), the
    component-by-component O_NOFOLLOW walk must fail rather than follow it."""
    monkeypatch.setattr(layer_unpack, "resolve_in_root", lambda path, readlink: tuple(path))
    with pytest.raises(InvalidArgument, match="not a directory"):
        unpack(box.root, S("a", str(box.outside)), F("a/secret", b"pwned"))
    box.assert_outside_untouched()


def test_directory_replaced_by_symlink_mid_layer_is_re_resolved(box: Sandbox) -> None:
    """Consecutive entries reuse their parent directory; a replacement must not be missed."""
    unpack(box.root, F("d/a", b"a"), S("d", str(box.outside)), F("d/b", b"b"))
    assert os.readlink(box.root / "d") == str(box.outside)
    assert (box.inside(box.outside) / "b").read_bytes() == b"b"
    box.assert_outside_untouched()


def test_directory_whited_out_mid_layer_is_recreated(box: Sandbox) -> None:
    unpack(box.root, F("x/a", b"a"), F(".wh.x"), F("x/b", b"b"), mode="apply")
    assert os.listdir(box.root / "x") == ["b"]


def test_symlink_chains_resolve_within_root(box: Sandbox) -> None:
    unpack(
        box.root,
        S("a", "b"),
        S("b", "c/d"),
        S("c", str(box.outside)),
        F("a/x", b"x"),
        S("up", ".."),
        F("up/up/up/y", b"y"),
    )
    box.assert_outside_untouched()
    assert (box.inside(box.outside) / "d/x").read_bytes() == b"x"
    assert (box.root / "y").read_bytes() == b"y"


@pytest.mark.parametrize(
    "links",
    [
        [S("a", "a")],
        [S("a", "b"), S("b", "a")],
        [S(f"l{i}", f"l{i + 1}") for i in range(MAX_SYMLINKS + 1)] + [S("a", "l0")],
    ],
    ids=["self", "pair", "chain"],
)
def test_symlink_loops_are_refused(box: Sandbox, links: list[Entry]) -> None:
    with pytest.raises(UnsafeLayer, match="too many levels"):
        unpack(box.root, *links, F("a/x", b"x"))
    box.assert_outside_untouched()


def test_hardlink_to_host_file_is_refused(box: Sandbox) -> None:
    shadow = Path("/etc/shadow")
    links_before = shadow.lstat().st_nlink if shadow.exists() else None
    with pytest.raises(UnsafeLayer, match="absolute"):
        unpack(box.root, H("shadow", "/etc/shadow"))
    assert not (box.root / "shadow").exists()
    if links_before is not None:
        assert shadow.lstat().st_nlink == links_before


@pytest.mark.parametrize("target", ["../outside/secret", "a/../../outside/secret"])
def test_hardlink_climbing_out_is_refused(box: Sandbox, target: str) -> None:
    with pytest.raises(UnsafeLayer, match="escapes"):
        unpack(box.root, H("h", target))
    box.assert_outside_untouched()


def test_hardlink_through_symlinked_parent_does_not_reach_outside(box: Sandbox) -> None:
    with pytest.raises(InvalidArgument, match="cannot hard link"):
        unpack(box.root, S("l", str(box.outside)), H("h", "l/secret"))
    box.assert_outside_untouched()  # includes the secret's link count


def test_hardlink_through_symlinked_parent_links_the_file_inside(box: Sandbox) -> None:
    unpack(box.root, F("real/f", b"inside"), S("l", "/real"), H("h", "l/f"))
    assert (box.root / "h").lstat().st_ino == (box.root / "real/f").lstat().st_ino


def test_hardlink_to_symlink_links_the_symlink_itself(box: Sandbox) -> None:
    secret = str(box.outside / "secret")
    unpack(box.root, S("s", secret), H("h", "s"))
    h = (box.root / "h").lstat()
    assert stat.S_ISLNK(h.st_mode)
    assert h.st_ino == (box.root / "s").lstat().st_ino
    assert os.readlink(box.root / "h") == secret
    box.assert_outside_untouched()


def test_file_over_symlink_replaces_the_symlink(box: Sandbox) -> None:
    unpack(box.root, S("s", str(box.outside / "secret")), F("s", b"pwned", mode=0o777))
    assert stat.S_ISREG((box.root / "s").lstat().st_mode)
    assert (box.root / "s").read_bytes() == b"pwned"
    box.assert_outside_untouched()


@pytest.mark.parametrize(
    "entry",
    [
        D("s", mode=0o700, uid=99),
        C("s", 1, 3),
        P("s"),
        S("s", "elsewhere"),
        H("s", "other"),
    ],
    ids=["dir", "chardev", "fifo", "symlink", "hardlink"],
)
def test_any_entry_over_symlink_replaces_it(box: Sandbox, entry: Entry) -> None:
    unpack(box.root, F("other", b"o"), S("s", str(box.outside)), entry)
    if entry[0].issym():
        assert os.readlink(box.root / "s") == "elsewhere"
    else:
        assert not stat.S_ISLNK((box.root / "s").lstat().st_mode)
    box.assert_outside_untouched()


def test_device_through_symlinked_parent_lands_inside(box: Sandbox) -> None:
    unpack(box.root, S("l", str(box.outside)), C("l/null", 1, 3), P("l/fifo"))
    assert stat.S_ISCHR((box.inside(box.outside) / "null").lstat().st_mode)
    assert stat.S_ISFIFO((box.inside(box.outside) / "fifo").lstat().st_mode)
    box.assert_outside_untouched()


def test_symlink_entries_keep_any_target_verbatim(box: Sandbox) -> None:
    unpack(box.root, S("abs", "/etc/shadow"), S("rel", "../../../../x"), S("dot", "."))
    assert os.readlink(box.root / "abs") == "/etc/shadow"
    assert os.readlink(box.root / "rel") == "../../../../x"
    assert os.readlink(box.root / "dot") == "."


@pytest.mark.parametrize("mode", ["overlay", "apply"])
def test_whiteouts_through_symlinked_parent_stay_inside(box: Sandbox, mode: str) -> None:
    unpack(box.root, S("l", str(box.outside)), F("x/secret", b"inside"), mode=mode)
    unpack(
        box.root,
        F("l/.wh.secret"),
        F("l/sub/.wh..wh..opq"),
        S("m", "../../x"),
        F("m/.wh.secret"),
        mode=mode,
    )
    box.assert_outside_untouched()
    inside_secret = box.root / "x/secret"
    if mode == "overlay":
        assert stat.S_ISCHR(inside_secret.lstat().st_mode)
    else:
        assert not inside_secret.exists()


@pytest.mark.parametrize("name", [".wh.", "a/.wh..", "a/.wh..."])
def test_whiteout_of_dot_names_is_refused(box: Sandbox, name: str) -> None:
    with pytest.raises(UnsafeLayer, match="whiteout"):
        unpack(box.root, F(name), mode="apply")


def test_apply_whiteout_of_symlink_removes_only_the_link(box: Sandbox) -> None:
    unpack(box.root, S("l", str(box.outside)), D("d"), S("d/link", str(box.outside)), mode="apply")
    unpack(box.root, F(".wh.l"), F(".wh.d"), mode="apply")
    assert sorted(os.listdir(box.root)) == []
    box.assert_outside_untouched()


def test_apply_opaque_through_symlink_to_outside_clears_inside_only(box: Sandbox) -> None:
    unpack(box.root, S("l", str(box.outside)), mode="apply")
    (box.inside(box.outside) / "sub").mkdir(parents=True)
    (box.inside(box.outside) / "sub/lower").write_bytes(b"lower")
    unpack(box.root, F("l/sub/.wh..wh..opq"), mode="apply")
    assert list((box.inside(box.outside) / "sub").iterdir()) == []
    box.assert_outside_untouched()


# ================================================================ whiteouts: apply (vfs)


def test_apply_whiteouts_delete_files_and_trees(box: Sandbox) -> None:
    unpack(box.root, F("keep", b"k"), F("gone", b"g"), F("tree/a/b", b"b"), mode="vfs")
    summary = unpack(box.root, F(".wh.gone"), F(".wh.tree"), F("absent/.wh.x"), mode="vfs")
    # "absent" is created, as overlayfs would show the directory holding a whiteout.
    assert sorted(os.listdir(box.root)) == ["absent", "keep"]
    assert summary.entries == 3


@pytest.mark.parametrize("marker_first", [True, False], ids=["marker-first", "marker-last"])
def test_apply_opaque_dir_keeps_only_this_layers_entries(box: Sandbox, marker_first: bool) -> None:
    unpack(
        box.root,
        F("a/lower1", b"1"),
        F("a/sub/lower2", b"2"),
        F("a/sub/deeper/lower3", b"3"),
        F("b/keep", b"k"),
        mode="apply",
    )
    marker = [F("a/.wh..wh..opq")]
    content = [D("a"), F("a/new", b"n"), F("a/sub/upper", b"u"), F("a/gone-dir/.wh.x")]
    unpack(box.root, *(marker + content if marker_first else content + marker), mode="apply")
    found = sorted(str(p.relative_to(box.root)) for p in box.root.rglob("*"))
    assert found == ["a", "a/gone-dir", "a/new", "a/sub", "a/sub/upper", "b", "b/keep"]


def test_apply_opaque_root(box: Sandbox) -> None:
    unpack(box.root, F("old", b"o"), mode="apply")
    unpack(box.root, F(".wh..wh..opq"), F("new", b"n"), mode="apply")
    assert os.listdir(box.root) == ["new"]


# ================================================================ whiteouts: overlay


def test_overlay_whiteout_is_a_0_0_char_device(box: Sandbox) -> None:
    summary = unpack(box.root, F("etc/.wh.motd", uid=7, gid=8), F(".wh..wh.plnk/1.2", b"x"))
    motd = (box.root / "etc/motd").lstat()
    assert stat.S_ISCHR(motd.st_mode)
    assert motd.st_rdev == 0
    assert (motd.st_uid, motd.st_gid) == (7, 8)
    assert sorted(os.listdir(box.root)) == ["etc"]  # no AUFS metadata
    assert os.listdir(box.root / "etc") == ["motd"]
    assert summary.entries == 2


def test_overlay_opaque_dir_sets_xattr(box: Sandbox) -> None:
    unpack(box.root, D("d"), F("d/.wh..wh..opq"), F("d/new", b"n"), F("implicit/.wh..wh..opq"))
    assert os.getxattr(box.root / "d", OVERLAY_OPAQUE_XATTR) == b"y"
    assert os.getxattr(box.root / "implicit", OVERLAY_OPAQUE_XATTR) == b"y"
    assert os.listdir(box.root / "d") == ["new"]


@pytest.mark.integration
def test_overlayfs_honours_unpacked_whiteouts(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("mounting overlayfs needs root")
    lower, upper_layer = tmp_path / "l1", tmp_path / "l2"
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (lower, upper_layer, upper, work, merged):
        d.mkdir()
    unpack(
        lower,
        F("keep", b"k"),
        F("gone", b"g"),
        F("dir/gone-too", b"x"),
        F("opq/old", b"o"),
        F("opq/sub/deep", b"d"),
    )
    unpack(
        upper_layer, F(".wh.gone"), F("dir/.wh.gone-too"), F("opq/.wh..wh..opq"), F("opq/new", b"n")
    )
    options = f"lowerdir={upper_layer}:{lower},upperdir={upper},workdir={work}"
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount overlayfs: {result.stderr.strip() or result.returncode}")
    try:
        assert sorted(os.listdir(merged)) == ["dir", "keep", "opq"]
        assert os.listdir(merged / "dir") == []
        assert os.listdir(merged / "opq") == ["new"]
        assert (merged / "keep").read_bytes() == b"k"
        assert (merged / "opq/new").read_bytes() == b"n"
    finally:
        subprocess.run(["umount", str(merged)], check=True)


# ================================================================ the tar source


class _Trickle(io.RawIOBase):
    """A source that hands out at most `step` bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        limit = self._step if size is None or size < 0 else min(size, self._step)
        return self._data.read(limit)


@pytest.mark.parametrize("step", [1 << 20, 4096, 777])
def test_contents_survive_chunk_boundaries_and_short_reads(box: Sandbox, step: int) -> None:
    big = os.urandom(3 << 20) + b"end"
    small = {f"small/{i}": os.urandom(i * 37) for i in range(60)}
    tar = build(F("big", big), *(F(name, data) for name, data in small.items()), F("last", b"x"))
    summary = unpack_layer(_Trickle(tar, step), box.root)
    assert (box.root / "big").read_bytes() == big
    for name, data in small.items():
        assert (box.root / name).read_bytes() == data
    assert (box.root / "last").read_bytes() == b"x"
    assert summary.bytes == len(big) + sum(map(len, small.values())) + 1


def test_file_cut_short_mid_body_is_invalid(box: Sandbox) -> None:
    tar = build(F("big", os.urandom(3 << 20)))
    with pytest.raises(InvalidArgument, match="corrupt layer tar"):
        unpack_layer(io.BytesIO(tar[: 2 << 20]), box.root)


def test_tar_source_reads_exact_sizes_and_only_seeks_forward() -> None:
    source = layer_unpack._TarSource(_Trickle(bytes(range(256)) * 10, 100))
    assert source.read(300) == (bytes(range(256)) * 2)[:300]
    assert source.tell() == 300
    source.seek(1000)
    assert source.read(2) == bytes([1000 % 256, 1001 % 256])
    with pytest.raises(tarfile.ReadError, match="backwards"):
        source.seek(10)
    assert source.read() == (bytes(range(256)) * 10)[1002:]
    assert source.read(10) == b""


@pytest.mark.parametrize("sparse_format", ["gnu", "posix"])
def test_gnu_sparse_files_are_unpacked_with_their_holes_as_zeros(
    box: Sandbox, tmp_path: Path, sparse_format: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(5 << 20)
        f.write(b"middle")
        f.truncate(9 << 20)
    (src / "after").write_bytes(b"after")
    archive = tmp_path / "layer.tar"
    subprocess.run(
        [
            "tar",
            "--sparse",
            f"--format={sparse_format}",
            "-cf",
            archive,
            "-C",
            src,
            "sparse",
            "after",
        ],
        check=True,
        timeout=60,
    )
    unpack_layer(io.BytesIO(archive.read_bytes()), box.root)
    assert (box.root / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert (box.root / "after").read_bytes() == b"after"
