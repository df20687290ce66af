"""LocalStorage syncs only what it wrote: each file, then each directory it changed; never the host."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from warehouse_tuf.storage import LocalStorage


@pytest.fixture
def no_global_sync(monkeypatch):
    def refuse() -> None:
        raise AssertionError("os.sync() flushes every filesystem of the host")

    monkeypatch.setattr(os, "sync", refuse)


@pytest.fixture
def fsynced(monkeypatch):
    """(device, inode) -> whether a directory, of everything fsynced."""
    synced: dict[tuple[int, int], bool] = {}
    lock = threading.Lock()
    real = os.fsync

    def fsync(fd) -> None:
        real(fd)
        info = os.fstat(fd)
        with lock:
            synced[(info.st_dev, info.st_ino)] = stat.S_ISDIR(info.st_mode)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def identity(path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def test_put_and_put_many_fsync_each_file_and_directory_never_the_host(tmp_path, no_global_sync, fsynced):
    storage = LocalStorage(tmp_path / "metadata")
    storage.put("timestamp.json", b"t" * 10)
    files = {f"{n}.bins-{n:x}.json": bytes([n]) * (1000 + n) for n in range(40)}
    files["project/abc.project.html"] = b"<html>page</html>"
    files["deep/er/still/1.json"] = b"{}"
    storage.put_many(files)
    written = {"timestamp.json": b"t" * 10, **files}
    assert sorted(storage.list()) == sorted(written)
    for name, data in written.items():
        assert storage.get(name) == data  # complete
        # Renamed into place after its fsync: the file fsynced is the file published.
        assert fsynced[identity(storage.base / name)] is False, name
    # Every directory whose entries changed (the new ones in their parents too) was fsynced.
    directories = {storage.base, storage.base.parent, storage.base / "project", storage.base / "deep",
                   storage.base / "deep" / "er", storage.base / "deep" / "er" / "still"}
    for directory in directories:
        assert fsynced[identity(directory)] is True, directory
    assert not list(storage.base.rglob(".tmp-*"))


def test_a_failed_write_publishes_nothing_and_leaves_no_temporary_file(tmp_path, no_global_sync, monkeypatch):
    storage = LocalStorage(tmp_path / "metadata")
    storage.put_many({"1.bins-0.json": b"old"})
    real, calls = os.fsync, []

    def failing(fd) -> None:
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="No space left"):
        storage.put_many({f"{n}.bins-0.json": b"new" for n in range(1, 20)} | {"1.bins-0.json": b"new"})
    assert list(storage.list()) == ["1.bins-0.json"] and storage.get("1.bins-0.json") == b"old"
    assert sorted(p.name for p in storage.base.iterdir()) == ["1.bins-0.json"]
