"""Apply one image layer (an uncompressed tar stream) onto a directory, never writing outside it.

A layer is untrusted input that we unpack as root, so the one property that
matters most is that no entry can create, modify or delete anything outside
the target root. Three rules give that:

* Entry names and hard-link targets are normalised lexically; absolute names
  and names that climb above the root with `..` are refused (`UnsafeLayer`).
* Symlinks among an entry's parent components are resolved by us, as if the
  root were `/` (chroot semantics, as containers/storage gets by unpacking in a
  chroot): `a -> /etc` followed by `a/passwd` writes `<root>/etc/passwd`.
* The kernel is never allowed to follow a symlink: directories are opened one
  component at a time with O_NOFOLLOW relative to their parent's descriptor,
  and every final-component operation is a no-follow `*at` call. If the tree
  changed under us, the open fails instead of escaping.

The per-entry decisions are pure functions of strings and TarInfo objects;
`_Unpacker` applies them to the filesystem.

Two whiteout modes exist. OVERLAY unpacks a layer into its own directory that
will be an overlayfs lower dir, so whiteouts become what overlayfs reads: a 0/0
character device, and `trusted.overlay.opaque=y` on opaque directories. APPLY
(the vfs driver) unpacks onto a directory already holding the lower layers, so
whiteouts delete what they name.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from typing import BinaryIO

from pycrio.errors import InvalidArgument

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
# A layer must not forge overlayfs metadata (redirects, metacopy, opaque): it
# could make a directory show another layer's files. user.overlay.* is what
# overlayfs reads instead when mounted with `userxattr`.
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_PAX_XATTR_PREFIX = "SCHILY.xattr."
MAX_SYMLINKS = 40  # the kernel's own limit for one path walk

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_CHUNK = 1 << 20  # what _TarSource asks its source for at a time
_IMPLICIT_DIR_MODE = 0o755

Path = tuple[str, ...]
"""A path below the root as its components; () is the root itself."""


class UnsafeLayer(InvalidArgument):
    """A layer entry tried to reach outside the target root; the whole layer is refused."""


class WhiteoutMode(StrEnum):
    OVERLAY = "overlay"
    APPLY = "apply"

    @classmethod
    def _missing_(cls, value: object) -> WhiteoutMode | None:
        # "vfs" is what operators call the apply mode (the storage driver's name).
        return cls.APPLY if value == "vfs" else None


class EntryKind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


@dataclass(frozen=True)
class Whiteout:
    """What a whiteout entry hides: `name` in `parent`, or all of `parent` when opaque."""

    parent: Path
    name: str | None  # None: opaque directory marker

    @property
    def opaque(self) -> bool:
        return self.name is None


@dataclass(frozen=True)
class LayerSummary:
    """What was unpacked, for sizing the layer: tar entries seen and regular-file bytes."""

    entries: int
    bytes: int


# ---------------------------------------------------------------- pure decisions


def normalize_name(name: str) -> Path:
    """Turn a tar entry name into components below the root, refusing any that escape.

    `a/../b` is cleaned to `b` lexically, as containers/storage does; what is
    refused is an absolute name or one whose `..` would climb above the root,
    since no legitimate layer is built that way.
    """
    if "\0" in name:
        raise UnsafeLayer(f"layer entry {name!r}: NUL byte in name")
    if name.startswith("/"):
        raise UnsafeLayer(f"layer entry {name!r}: absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeLayer(f"layer entry {name!r}: path escapes the layer root")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def hardlink_target(linkname: str, entry: str = "") -> Path:
    """Validate a hard link's target: a path inside the layer, never the root itself.

    Unlike symlinks, a hard link's target is resolved now, so `/etc/shadow`
    here would mean linking the host's file into the image.
    """
    label = entry or linkname
    if linkname.startswith("/"):
        raise UnsafeLayer(f"layer entry {label!r}: hard link to absolute path {linkname!r}")
    try:
        target = normalize_name(linkname)
    except UnsafeLayer:
        raise UnsafeLayer(
            f"layer entry {label!r}: hard link target {linkname!r} escapes the layer root"
        ) from None
    if not target:
        raise UnsafeLayer(f"layer entry {label!r}: hard link to the layer root")
    return target


def is_aufs_metadata(path: Path) -> bool:
    """AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`) from old Docker exports: not content."""
    return bool(path) and path[0].startswith(WHITEOUT_META_PREFIX) and path != (WHITEOUT_OPAQUE,)


def whiteout_of(path: Path) -> Whiteout | None:
    """Classify an entry as a whiteout (`.wh.NAME`), an opaque marker, or ordinary content."""
    if not path:
        return None
    base = path[-1]
    if base == WHITEOUT_OPAQUE:
        return Whiteout(path[:-1], None)
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    name = base[len(WHITEOUT_PREFIX) :]
    if name in ("", ".", ".."):
        raise UnsafeLayer(f"layer entry {'/'.join(path)!r}: whiteout of {name!r}")
    return Whiteout(path[:-1], name)


def entry_kind(info: tarfile.TarInfo) -> EntryKind:
    """Map a tar header type to what we create; unknown types are refused, not guessed."""
    checks = (
        (info.isreg, EntryKind.FILE),  # includes contiguous and GNU sparse files
        (info.isdir, EntryKind.DIR),
        (info.issym, EntryKind.SYMLINK),
        (info.islnk, EntryKind.HARDLINK),
        (info.ischr, EntryKind.CHAR),
        (info.isblk, EntryKind.BLOCK),
        (info.isfifo, EntryKind.FIFO),
    )
    for check, kind in checks:
        if check():
            return kind
    raise InvalidArgument(f"layer entry {info.name!r}: unsupported tar entry type {info.type!r}")


def entry_xattrs(info: tarfile.TarInfo) -> dict[str, bytes]:
    """Extended attributes from PAX `SCHILY.xattr.*` records, as raw bytes.

    tarfile decodes PAX values as UTF-8 with surrogateescape, so encoding back
    the same way recovers binary values such as `security.capability`.
    """
    xattrs = {}
    for key, value in info.pax_headers.items():
        if not key.startswith(_PAX_XATTR_PREFIX):
            continue
        name = key[len(_PAX_XATTR_PREFIX) :]
        if name.startswith(_FORBIDDEN_XATTR_PREFIXES):
            log.debug("layer entry %r: dropping xattr %s", info.name, name)
            continue
        xattrs[name] = value.encode("utf-8", "surrogateescape")
    return xattrs


def entry_times_ns(info: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in nanoseconds, from PAX records when present for full precision."""
    mtime = _pax_time_ns(info, "mtime")
    if mtime is None:
        mtime = int(Decimal(str(info.mtime)) * 1_000_000_000)
    atime = _pax_time_ns(info, "atime")
    return (mtime if atime is None else atime), mtime


def _pax_time_ns(info: tarfile.TarInfo, key: str) -> int | None:
    raw = info.pax_headers.get(key)
    if raw is None:
        return None
    try:
        return int(Decimal(raw) * 1_000_000_000)
    except InvalidOperation:
        return None


def resolve_in_root(path: Sequence[str], readlink: Callable[[Path], str | None]) -> Path:
    """Resolve symlinks in `path` as if the root were `/`; the result has no symlinks or `..`.

    `readlink(p)` returns the target of the symlink at `p` (components already
    resolved), or None when `p` is not a symlink or does not exist. Absolute
    targets restart at the root and `..` stops at the root, so whatever the
    links say, the result stays inside. Missing components are kept as they are
    (they will be created as directories).
    """
    pending = deque(path)
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        target = readlink((*resolved, part))
        if target is None:
            resolved.append(part)
            continue
        followed += 1
        if followed > MAX_SYMLINKS:
            raise UnsafeLayer(f"path {'/'.join(path)!r}: too many levels of symbolic links")
        if target.startswith("/"):
            resolved.clear()
        pending.extendleft(reversed(target.split("/")))
    return tuple(resolved)


# ---------------------------------------------------------------- filesystem edge


def unpack_layer(
    stream: BinaryIO,
    root: str | os.PathLike[str],
    mode: WhiteoutMode | str = WhiteoutMode.OVERLAY,
) -> LayerSummary:
    """Apply the uncompressed layer tar in `stream` onto the existing directory `root`.

    Raises UnsafeLayer for an entry that tries to escape `root` and
    InvalidArgument for a malformed layer; either way `root` is left partly
    written and the caller must delete it. The tar reader stops at the
    end-of-archive marker, so callers verifying a digest over `stream` must
    drain it afterwards (DigestReader.verify does). Must run as root to set
    owners, device nodes and trusted.* xattrs.
    """
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        source = _TarSource(stream)
        unpacker = _Unpacker(root_fd, WhiteoutMode(mode), source)
        try:
            # tarfile's own stream mode ("r|") reads its source 10 KiB at a time
            # and copies every byte through two buffers; _TarSource gives it the
            # forward-only seek and tell of its random-access mode instead, and
            # lets file contents go straight from the decoder's chunks to disk.
            with tarfile.TarFile(fileobj=source, mode="r") as tar:  # type: ignore[arg-type]
                while (info := tar.next()) is not None:
                    # Members are never revisited; without this a layer of
                    # many small files would keep every header in memory.
                    tar.members.clear()
                    unpacker.apply(tar, info)
            unpacker.finish()
        except tarfile.TarError as exc:
            raise InvalidArgument(f"corrupt layer tar: {exc}") from exc
        finally:
            unpacker.close()
        return LayerSummary(unpacker.entries, unpacker.bytes)
    finally:
        os.close(root_fd)


class _TarSource:
    """A tar stream read once, front to back, with the file interface tarfile needs.

    tarfile's random-access mode only ever seeks forward when members are
    read in order, so a seek here skips bytes and a seek backwards is a bug.
    The source is read in large chunks (few Python calls per megabyte, and
    hashing and decompressing release the GIL on big buffers); small reads
    such as tar headers are served from the current chunk.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._chunk: bytes = b""
        self._pos = 0  # next unread byte in _chunk
        self._offset = 0  # stream offset of the next unread byte

    def _fill(self) -> bool:
        """Load the next chunk once the current one is used up; False at EOF."""
        chunk = self._source.read(_READ_CHUNK)
        self._chunk, self._pos = chunk or b"", 0
        return bool(chunk)

    def tell(self) -> int:
        return self._offset

    def read(self, size: int | None = -1) -> bytes:
        """Exactly ``size`` bytes unless the stream ends first (tarfile relies on it)."""
        if size is None or size < 0:
            size = 1 << 62
        parts = []
        want = size
        while want:
            if self._pos >= len(self._chunk) and not self._fill():
                break
            piece = self._chunk[self._pos : self._pos + want]
            self._pos += len(piece)
            want -= len(piece)
            parts.append(piece)
        self._offset += size - want
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset < self._offset:
            raise tarfile.ReadError("layer tar: the stream cannot seek backwards")
        while self._offset < offset:
            if self._pos >= len(self._chunk) and not self._fill():
                break  # like a file: seeking past the end is allowed, reading there is not
            step = min(offset - self._offset, len(self._chunk) - self._pos)
            self._pos += step
            self._offset += step
        self._offset = offset
        return offset

    def copy_to(self, fd: int, size: int) -> None:
        """Write the next ``size`` bytes to ``fd`` without copying them in Python."""
        while size:
            if self._pos >= len(self._chunk) and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            end = min(len(self._chunk), self._pos + size)
            with memoryview(self._chunk)[self._pos : end] as view:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
            self._offset += end - self._pos
            size -= end - self._pos
            self._pos = end


class _Unpacker:
    def __init__(self, root_fd: int, mode: WhiteoutMode, source: _TarSource) -> None:
        self.root_fd = root_fd
        self.mode = mode
        self.source = source
        self.entries = 0
        self.bytes = 0
        # APPLY mode: what this layer put in place (and their ancestors), which an
        # opaque marker must keep while it clears what lower layers left.
        self._written: set[Path] = set()
        # Directory metadata is applied last: creating children would bump the
        # mtime, and a read-only mode would stop the children being written.
        self._dirs: dict[Path, tarfile.TarInfo] = {}
        # Consecutive entries mostly share a directory: keep the last parent open
        # (lexical path, resolved path, descriptor) instead of walking to it again.
        # This stays right because an entry only creates or removes children of
        # its own parent: while the lexical parent is unchanged, nothing that its
        # resolution went through can have changed. (We never rename, so even a
        # stale descriptor could only point into the root.)
        self._parent: tuple[Path, Path, int] | None = None

    def close(self) -> None:
        if self._parent is not None:
            os.close(self._parent[2])
            self._parent = None

    # -- entries

    def apply(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        self.entries += 1
        path = normalize_name(info.name)
        if is_aufs_metadata(path):
            log.debug("skipping AUFS metadata entry %r", info.name)
            return
        whiteout = whiteout_of(path)
        if whiteout is not None:
            self._whiteout(whiteout, info)
            return
        kind = entry_kind(info)
        if not path:
            if kind is not EntryKind.DIR:
                raise UnsafeLayer(f"layer entry {info.name!r}: the layer root must be a directory")
            return  # the root's own metadata belongs to whoever created it
        source = hardlink_target(info.linkname, info.name) if kind is EntryKind.HARDLINK else None
        parent, dir_fd = self._parent_dir(path[:-1], info.name)
        name = path[-1]
        if self._prepare_slot(dir_fd, name, kind):
            self._create(tar, info, kind, dir_fd, name, source)
        self._mark_written(parent + (name,))
        if kind is EntryKind.DIR:
            self._dirs[parent + (name,)] = info

    def _prepare_slot(self, dir_fd: int, name: str, kind: EntryKind) -> bool:
        """Clear the way for a new entry; False when an existing directory is merged into.

        An existing entry is replaced, never written through (it may be a
        symlink or a hard link to a lower layer's file), except that a
        directory over a directory merges, as in containers/storage.
        """
        existing = _lstat(dir_fd, name)
        if existing is None:
            return True
        if kind is EntryKind.DIR and stat.S_ISDIR(existing.st_mode):
            return False
        self._remove(dir_fd, name, existing)
        return True

    def _create(
        self,
        tar: tarfile.TarFile,
        info: tarfile.TarInfo,
        kind: EntryKind,
        dir_fd: int,
        name: str,
        source: Path | None,
    ) -> None:
        if kind is EntryKind.FILE:
            self._write_file(tar, info, dir_fd, name)
            return
        if kind is EntryKind.DIR:
            os.mkdir(name, 0o700, dir_fd=dir_fd)  # real mode comes in finish()
            return
        if kind is EntryKind.HARDLINK:
            assert source is not None
            self._link(info, source, dir_fd, name)
            return  # the inode already carries the metadata of its first name
        if kind is EntryKind.SYMLINK:
            try:
                os.symlink(info.linkname, name, dir_fd=dir_fd)
            except (FileNotFoundError, ValueError) as exc:
                raise InvalidArgument(f"layer entry {info.name!r}: bad symlink: {exc}") from exc
        elif kind is EntryKind.FIFO:
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
        else:
            file_type = stat.S_IFCHR if kind is EntryKind.CHAR else stat.S_IFBLK
            device = os.makedev(info.devmajor, info.devminor)
            os.mknod(name, 0o600 | file_type, device, dir_fd=dir_fd)
        self._set_metadata(info, dir_fd, name, chmod=kind is not EntryKind.SYMLINK)

    def _write_file(
        self, tar: tarfile.TarFile, info: tarfile.TarInfo, dir_fd: int, name: str
    ) -> None:
        fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            if info.sparse is None:
                # The body follows its header: copy it straight from the stream.
                self.source.seek(info.offset_data)
                self.source.copy_to(fd, info.size)
            else:  # GNU sparse: tarfile maps the data onto the holes (written as zeros)
                content = tar.extractfile(info)
                assert content is not None  # regular files always have a body
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(content, out, _READ_CHUNK)
            self.bytes += info.size
            os.fchown(fd, info.uid, info.gid)
            _set_xattrs(fd, entry_xattrs(info), info.name)
            os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears setuid
            os.utime(fd, ns=entry_times_ns(info))
        finally:
            os.close(fd)

    def _link(self, info: tarfile.TarInfo, source: Path, dir_fd: int, name: str) -> None:
        # The target's parents resolve like any path, within the root; its last
        # component is linked as is, so a link to a symlink is another symlink.
        source_parent = self._resolve(source[:-1], info.name)
        try:
            source_dir = self._walk(source_parent, info.name, create=False)
            try:
                os.link(
                    source[-1],
                    name,
                    src_dir_fd=source_dir,
                    dst_dir_fd=dir_fd,
                    follow_symlinks=False,
                )
            finally:
                os.close(source_dir)
        except (FileNotFoundError, PermissionError) as exc:
            raise InvalidArgument(
                f"layer entry {info.name!r}: cannot hard link to {info.linkname!r}: {exc}"
            ) from exc

    def _set_metadata(self, info: tarfile.TarInfo, dir_fd: int, name: str, chmod: bool) -> None:
        """Owner, xattrs, mode and times of a non-regular entry, without following it."""
        os.chown(name, info.uid, info.gid, dir_fd=dir_fd, follow_symlinks=False)
        xattrs = entry_xattrs(info)
        if xattrs:
            # No setxattr-at: go through our directory descriptor's /proc link
            # and set the attribute on the final component without following it.
            _set_xattrs(f"/proc/self/fd/{dir_fd}/{name}", xattrs, info.name)
        if chmod:
            os.chmod(name, info.mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
        os.utime(name, ns=entry_times_ns(info), dir_fd=dir_fd, follow_symlinks=False)

    # -- whiteouts

    def _whiteout(self, whiteout: Whiteout, info: tarfile.TarInfo) -> None:
        # The directory holding a whiteout is part of this layer (overlayfs would
        # show it), so it is created if missing, in both modes, and an opaque
        # marker further up must keep it.
        parent, dir_fd = self._parent_dir(whiteout.parent, info.name)
        overlay = self.mode is WhiteoutMode.OVERLAY
        if whiteout.name is None:
            if overlay:
                os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self._clear_lower(dir_fd, parent)
        elif overlay:
            self._prepare_slot(dir_fd, whiteout.name, EntryKind.CHAR)
            os.mknod(whiteout.name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)
            os.chown(whiteout.name, info.uid, info.gid, dir_fd=dir_fd, follow_symlinks=False)
        else:
            existing = _lstat(dir_fd, whiteout.name)
            if existing is not None:
                self._remove(dir_fd, whiteout.name, existing)
        self._mark_written(parent)

    def _clear_lower(self, dir_fd: int, path: Path) -> None:
        """Delete what lower layers left under an opaque directory, keeping this layer's entries."""
        with os.scandir(dir_fd) as it:
            children = list(it)
        for child in children:
            child_path = path + (child.name,)
            if child_path not in self._written:
                self._remove(dir_fd, child.name, None)
            elif child.is_dir(follow_symlinks=False):
                child_fd = os.open(child.name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._clear_lower(child_fd, child_path)
                finally:
                    os.close(child_fd)

    # -- paths

    def _resolve(self, path: Path, entry: str) -> Path:
        try:
            return resolve_in_root(path, self._readlink)
        except UnsafeLayer as exc:
            raise UnsafeLayer(f"layer entry {entry!r}: {exc.message}") from None

    def _readlink(self, path: Path) -> str | None:
        # The prefix was just checked component by component and holds no
        # symlink, so the kernel's walk here cannot leave the root; and what
        # comes back is only data for resolve_in_root, which re-roots it.
        try:
            return os.readlink("/".join(path), dir_fd=self.root_fd)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def _parent_dir(self, lexical: Path, entry: str) -> tuple[Path, int]:
        """Resolve and open (creating as needed) an entry's parent; the descriptor is borrowed."""
        cached = self._parent
        if cached is not None and cached[0] == lexical:
            return cached[1], cached[2]
        self.close()
        resolved = self._resolve(lexical, entry)
        fd = self._walk(resolved, entry, create=True)
        self._parent = (lexical, resolved, fd)
        return resolved, fd

    def _walk(self, path: Path, entry: str, create: bool) -> int:
        """Open the directory at a resolved path one component at a time, never following links."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(path):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, _IMPLICIT_DIR_MODE, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(child, _IMPLICIT_DIR_MODE)  # independent of the umask
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    where = "/".join(path[: index + 1])
                    raise InvalidArgument(
                        f"layer entry {entry!r}: {where!r} is not a directory"
                    ) from exc
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _remove(self, dir_fd: int, name: str, st: os.stat_result | None) -> None:
        """Delete an entry (a directory with all it holds) without following any symlink."""
        if st is None:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: does not follow symlinks
        else:
            os.unlink(name, dir_fd=dir_fd)

    def _mark_written(self, path: Path) -> None:
        if self.mode is not WhiteoutMode.APPLY:
            return
        for end in range(len(path), 0, -1):
            if path[:end] in self._written:
                break
            self._written.add(path[:end])

    # -- end of layer

    def finish(self) -> None:
        """Apply directory metadata, deepest first, once nothing more will be written inside."""
        for path in sorted(self._dirs, key=len, reverse=True):
            info = self._dirs[path]
            try:
                fd = self._walk(path, info.name, create=False)
            except (FileNotFoundError, InvalidArgument):
                continue  # a later entry removed or replaced it; its metadata went with it
            try:
                os.fchown(fd, info.uid, info.gid)
                _set_xattrs(fd, entry_xattrs(info), info.name)
                os.fchmod(fd, info.mode & 0o7777)
                os.utime(fd, ns=entry_times_ns(info))
            finally:
                os.close(fd)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _set_xattrs(target: int | str, xattrs: dict[str, bytes], entry: str) -> None:
    for key, value in xattrs.items():
        try:
            # Descriptors are already the object itself; paths must not be followed.
            os.setxattr(target, key, value, follow_symlinks=isinstance(target, int))
        except OSError as exc:
            # As containers/storage: a filesystem or namespace that cannot hold
            # an attribute (user.* on a symlink, security.* unprivileged) is
            # not a reason to refuse the image.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            log.warning("layer entry %r: cannot set xattr %s: %s", entry, key, exc)
