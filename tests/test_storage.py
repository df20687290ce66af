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
    assert not [p for p in storage.base.rglob(".tmp-*")]


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


def test_every_file_is_durable_before_its_rename_and_its_directory_after_them_in_the_publish_order(
        tmp_path, no_global_sync, monkeypatch):
    """The order a publish relies on, from the system calls themselves.

    Each file is fsynced (or fdatasynced) whole before it is renamed into place,
    its directory is fsynced after the last rename of the batch, and all of it
    happens before ``put_many`` returns: the bins and the snapshot of one batch
    are durable before the timestamp naming the snapshot is even written.
    """
    events: list[tuple] = []
    lock = threading.Lock()
    real_fsync, real_fdatasync, real_replace = os.fsync, os.fdatasync, os.replace

    def recording(real):
        def sync(fd) -> None:
            real(fd)
            info = os.fstat(fd)
            with lock:
                events.append(("sync", (info.st_dev, info.st_ino), stat.S_ISDIR(info.st_mode), info.st_size))
        return sync

    def replace(source, destination) -> None:
        info = os.stat(source)
        real_replace(source, destination)
        with lock:
            events.append(("rename", (info.st_dev, info.st_ino), str(destination)))

    monkeypatch.setattr(os, "fsync", recording(real_fsync))
    monkeypatch.setattr(os, "fdatasync", recording(real_fdatasync))
    monkeypatch.setattr(os, "replace", replace)

    storage = LocalStorage(tmp_path / "metadata")
    batch = {f"2.bins-{n:x}.json": os.urandom(64 + n) for n in range(300)}
    batch["2.snapshot.json"] = b'{"snapshot": 2}'
    storage.put_many(batch)
    batch_events = len(events)
    storage.put("timestamp.json", b'{"timestamp": 2}')

    def positions(kind: str, events_: list[tuple]) -> dict:
        return {event[1]: i for i, event in enumerate(events_) if event[0] == kind}

    for part, written in ((events[:batch_events], batch),
                          (events[batch_events:], {"timestamp.json": b'{"timestamp": 2}'})):
        synced, renamed = positions("sync", part), positions("rename", part)
        directory_syncs = [i for i, event in enumerate(part) if event[0] == "sync" and event[2]]
        assert identity(storage.base) in {part[i][1] for i in directory_syncs}
        for name, data in written.items():
            inode = identity(storage.base / name)
            assert inode in synced and inode in renamed, name  # every file it wrote, no other
            sync_event = part[synced[inode]]
            assert sync_event[2] is False and sync_event[3] == len(data), name  # the whole file
            assert synced[inode] < renamed[inode] < max(directory_syncs), name
        assert {event[1] for event in part if event[0] == "rename"} == {
            identity(storage.base / name) for name in written}
    # The renames follow the batch's order (a client walks versions one by one).
    assert [event[2] for event in events[:batch_events] if event[0] == "rename"] == [
        str(storage.base / name) for name in batch]
