"""Layers unpacked in a worker process: same results and errors as in the daemon's own."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycrio.errors import DataLoss, InvalidArgument, Unavailable
from pycrio.storage import unpack_worker
from pycrio.storage.layer_unpack import WhiteoutMode

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer(entries: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(gzip blob, diff_id) of a tar with regular files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def chunks(blob: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(blob), size):
        yield blob[i : i + size]


def live_parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(pid)] = int(fields[1])
    return out


def grandchildren() -> set[int]:
    """Our children's children: the forkserver's workers."""
    parents = live_parents()
    ours = {pid for pid, ppid in parents.items() if ppid == os.getpid()}
    return {pid for pid, ppid in parents.items() if ppid in ours}


def test_a_layer_is_unpacked_by_a_worker(tmp_path: Path) -> None:
    blob, diff_id = layer([("etc/hello", b"hi\n"), ("big", os.urandom(3 << 20))])
    summary = unpack_worker.unpack(
        chunks(blob, 65536), str(tmp_path), GZIP, diff_id, WhiteoutMode.OVERLAY
    )
    assert (tmp_path / "etc" / "hello").read_bytes() == b"hi\n"
    assert (tmp_path / "big").stat().st_size == 3 << 20
    assert (summary.entries, summary.bytes) == (2, 3 + (3 << 20))  # etc/ is implicit


def test_an_escaping_entry_fails_as_a_bad_layer(tmp_path: Path) -> None:
    blob, diff_id = layer([("ok", b"x"), ("../escaped", b"y")])
    (tmp_path / "root").mkdir()
    with pytest.raises(InvalidArgument, match="escapes the layer root"):
        unpack_worker.unpack(chunks(blob), str(tmp_path / "root"), GZIP, diff_id, "overlay")
    assert not (tmp_path / "escaped").exists()


def test_a_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    blob, _ = layer([("a", b"a")])
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DataLoss, match="expected sha256:0000000000"):
        unpack_worker.unpack(chunks(blob), str(tmp_path), GZIP, wrong, WhiteoutMode.OVERLAY)


def test_corrupt_compressed_data_is_a_bad_layer(tmp_path: Path) -> None:
    blob, diff_id = layer([("a", os.urandom(100_000))])
    broken = blob[:200] + bytes(b ^ 0xFF for b in blob[200:400]) + blob[400:]
    with pytest.raises(InvalidArgument, match="corrupt"):
        unpack_worker.unpack(chunks(broken), str(tmp_path), GZIP, diff_id, WhiteoutMode.OVERLAY)


def test_a_failing_download_stops_the_worker(tmp_path: Path) -> None:
    blob, diff_id = layer([("a", os.urandom(1 << 20))])

    def cut_short() -> Iterator[bytes]:
        yield blob[:5000]
        raise Unavailable("registry went away")

    before = grandchildren()
    with pytest.raises(Unavailable, match="registry went away"):
        unpack_worker.unpack(cut_short(), str(tmp_path), GZIP, diff_id, WhiteoutMode.OVERLAY)
    assert grandchildren() <= before  # the worker is gone
