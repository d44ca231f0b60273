from __future__ import annotations

from pathlib import Path

from pycrio.image.image_store import ImageRecord, ImageStore


def rec(image_id: str, tags: list[str], digests: list[str] | None = None) -> ImageRecord:
    return ImageRecord(id=image_id, repo_tags=tags, repo_digests=digests or [], layers=["sha256:l"])


def test_commit_moves_tags_and_survives_reopen(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    store.commit(rec("sha256:old", ["r/a:1", "r/a:stable"], ["r/a@sha256:m1"]))
    store.commit(rec("sha256:new", ["r/a:1"], ["r/a@sha256:m2"]))
    assert store.get("sha256:old").repo_tags == ["r/a:stable"]
    assert store.by_name("r/a:1").id == "sha256:new"
    store.commit(rec("sha256:newer", ["r/a:stable"]))
    dangling = store.get("sha256:old")
    assert dangling.repo_tags == [] and dangling.repo_digests == ["r/a@sha256:m1"]
    store.close()
    again = ImageStore(str(tmp_path))
    assert {r.id for r in again.all()} == {"sha256:old", "sha256:new", "sha256:newer"}
    assert again.by_name("r/a@sha256:m2").id == "sha256:new"
    assert again.get("sha256:old").repo_tags == []


def test_commit_of_a_known_image_merges_names(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    store.commit(rec("sha256:i", ["r/a:1"], ["r/a@sha256:m"]))
    merged = store.commit(rec("sha256:i", ["r/b:2"], ["r/b@sha256:m"]))
    assert merged.repo_tags == ["r/a:1", "r/b:2"]
    assert merged.repo_digests == ["r/a@sha256:m", "r/b@sha256:m"]


def test_delete_prefix_and_blobs(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path))
    store.commit(rec("sha256:abcdef", ["r/a:1"]))
    store.commit(rec("sha256:abc999", ["r/b:1"]))
    assert len(store.by_id_prefix("abc")) == 2
    assert [r.id for r in store.by_id_prefix("abcd")] == ["sha256:abcdef"]
    store.delete("sha256:abcdef")
    assert store.get("sha256:abcdef") is None
    assert ImageStore(str(tmp_path)).get("sha256:abcdef") is None
    store.put_blob("sha256:b1", b"{}")
    assert store.get_blob("sha256:b1") == b"{}"
    assert store.blobs() == {"sha256:b1"}
    store.remove_blob("sha256:b1")
    store.remove_blob("sha256:b1")
    assert store.get_blob("sha256:b1") is None
