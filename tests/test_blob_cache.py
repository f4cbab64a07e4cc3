"""The node-local cache of blobs by sha256 (harness/blob_cache.py): hits and misses, corrupt
entries refetched, changed remote objects refused and not cached, LRU eviction under the bound,
and checkpoints of an s3:// store fetched once per node."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from harness import objects
from harness.blob_cache import BlobCache, BlobMismatch, cache_bound_bytes, default_cache
from harness.fileio import sha256_bytes
from harness.objects import ObjectPath, storage_location
from harness.store import CheckpointStore, StoreError

CAP = 1 << 20


@pytest.fixture
def remote(s3_storage: str) -> ObjectPath:
    """A fresh folder of objects on the test S3 server."""
    location = storage_location(s3_storage)
    assert isinstance(location, ObjectPath)
    return location


def put(folder: ObjectPath, name: str, data: bytes) -> tuple[ObjectPath, str]:
    obj = folder / name
    obj.put(data)
    return obj, sha256_bytes(data)


def age(cache: BlobCache, sha: str, seconds: float) -> None:
    """Make an entry look ``seconds`` older (LRU order without sleeping)."""
    path = cache.entry_path(sha)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_second_get_is_a_local_hit(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 10 * CAP)
    obj, sha = put(remote, "a.bin", b"alpha" * 100)
    assert cache.get(obj, sha, CAP, "blob") == b"alpha" * 100
    assert (cache.hits, cache.misses, cache.bytes_fetched) == (0, 1, 500)
    assert cache.entry_path(sha).read_bytes() == b"alpha" * 100
    objects.REQUESTS.clear()
    assert cache.get(obj, sha, CAP, "blob") == b"alpha" * 100
    assert (cache.hits, cache.misses, cache.bytes_fetched) == (1, 1, 500)
    assert sum(objects.REQUESTS.values()) == 0  # no request at all on a hit


def test_corrupt_entry_is_deleted_and_fetched_again(
    remote: ObjectPath, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = BlobCache(tmp_path / "c", 10 * CAP)
    obj, sha = put(remote, "a.bin", b"good bytes")
    cache.get(obj, sha, CAP)
    cache.entry_path(sha).write_bytes(b"flipped bits")
    with caplog.at_level(logging.WARNING, logger="harness"):
        assert cache.get(obj, sha, CAP) == b"good bytes"
    assert "corrupt" in caplog.text and str(cache.entry_path(sha)) in caplog.text
    assert (cache.hits, cache.misses) == (0, 2)
    assert cache.entry_path(sha).read_bytes() == b"good bytes"  # repaired


def test_symlinked_entry_is_not_followed(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 10 * CAP)
    obj, sha = put(remote, "a.bin", b"real")
    outside = tmp_path / "outside"
    outside.write_bytes(b"real")  # even with the right bytes, a link is not an entry
    cache.entry_path(sha).parent.mkdir(parents=True)
    cache.entry_path(sha).symlink_to(outside)
    assert cache.get(obj, sha, CAP) == b"real"
    assert cache.misses == 1 and not cache.entry_path(sha).is_symlink()
    assert outside.read_bytes() == b"real"


def test_changed_remote_object_is_refused_and_not_cached(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 10 * CAP)
    obj, sha = put(remote, "a.bin", b"original")
    obj.put(b"replaced by someone")
    with pytest.raises(BlobMismatch, match=r"a\.bin .*not its recorded sha256"):
        cache.get(obj, sha, CAP, "checkpoint")
    assert not cache.entry_path(sha).exists() and cache.total_bytes() == 0


def test_malformed_sha_is_refused_before_any_fetch(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 10 * CAP)
    obj, _ = put(remote, "a.bin", b"x")
    with pytest.raises(BlobMismatch, match="not a sha256"):
        cache.get(obj, "../../etc/passwd", CAP)
    assert cache.misses == 0 and not (tmp_path / "c").exists()


def test_eviction_keeps_the_bound_and_drops_least_recently_used(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 2500)
    blobs = [put(remote, f"{i}.bin", bytes([i]) * 1000) for i in range(3)]
    cache.get(*blobs[0], CAP)
    cache.get(*blobs[1], CAP)
    age(cache, blobs[0][1], 20)
    age(cache, blobs[1][1], 10)
    assert cache.get(*blobs[0], CAP) == bytes([0]) * 1000  # a hit makes 0 the most recently used
    assert cache.hits == 1
    cache.get(*blobs[2], CAP)  # 3000 bytes > 2500: the least recently used (1) goes
    assert cache.total_bytes() <= 2500
    assert cache.entry_path(blobs[0][1]).exists() and cache.entry_path(blobs[2][1]).exists()
    assert not cache.entry_path(blobs[1][1]).exists()


def test_blob_larger_than_the_bound_is_returned_not_kept(remote: ObjectPath, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "c", 100)
    small, big = put(remote, "s.bin", b"s" * 50), put(remote, "b.bin", b"b" * 500)
    cache.get(*small, CAP)
    assert cache.get(*big, CAP) == b"b" * 500
    assert not cache.entry_path(big[1]).exists()
    assert cache.entry_path(small[1]).exists()  # nothing evicted for a blob that is not kept


def test_default_cache_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKD_OBJECT_CACHE", str(tmp_path / "one"))
    monkeypatch.setenv("CKD_OBJECT_CACHE_GB", "0.5")
    first = default_cache()
    assert first.root == tmp_path / "one" and first.max_bytes == 2**29
    assert default_cache() is first  # counters add up within a process
    monkeypatch.setenv("CKD_OBJECT_CACHE", str(tmp_path / "two"))
    assert default_cache().root == tmp_path / "two"
    monkeypatch.setenv("CKD_OBJECT_CACHE_GB", "lots")
    with pytest.raises(ValueError, match="CKD_OBJECT_CACHE_GB='lots'"):
        cache_bound_bytes()


def s3_trajectory(s3_storage: str):
    """A finished trajectory with one tiny checkpoint, on the S3 server."""
    traj = CheckpointStore(s3_storage, "exp").trajectory("cnn-d-s0")
    manifest = {"finished": True, "epochs": 1}
    traj.save_checkpoint(1, {"model": {"w": torch.arange(4.0)}}, manifest, {})
    traj.write_manifest(manifest)
    return traj


def test_s3_checkpoint_is_fetched_once_per_node(
    s3_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CKD_OBJECT_CACHE", str(tmp_path / "cache"))
    traj = s3_trajectory(s3_storage)
    objects.REQUESTS.clear()
    assert torch.equal(traj.load_checkpoint(1)["model"]["w"], torch.arange(4.0))
    assert objects.REQUESTS["GetObject"] == 2  # the manifest and the checkpoint
    objects.REQUESTS.clear()
    assert torch.equal(traj.load_checkpoint(1)["model"]["w"], torch.arange(4.0))
    assert objects.REQUESTS["GetObject"] == 1  # the manifest only: the checkpoint came from the cache
    cache = default_cache()
    assert (cache.hits, cache.misses) == (1, 1)


def test_s3_changed_checkpoint_is_a_store_error(
    s3_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CKD_OBJECT_CACHE", str(tmp_path / "cache"))
    traj = s3_trajectory(s3_storage)
    traj.checkpoint_path(1).put(b"not the weights the manifest names")
    with pytest.raises(StoreError, match="does not match its sha256 in the manifest"):
        traj.load_checkpoint(1)
    assert default_cache().total_bytes() == 0
    traj.checkpoint_path(1).unlink()
    with pytest.raises(StoreError, match="is missing"):
        traj.load_checkpoint(1)
