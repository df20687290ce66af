"""Storage backends for published bytes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from zope.interface import implementer

from warehouse_tuf.interfaces import IMetadataStorage


class StorageError(OSError):
    """Storage refused a write or a name."""


#: Threads fsyncing one batch: enough for the filesystem to commit their fsyncs together, few
#: enough not to take the interpreter lock from the signing thread (see docs/performance.md).
_SYNC_THREADS = 8


def _write_temporary(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path``, fsynced and closed; its name.

    Four system calls and little Python between them: the threads of a batch
    then seldom hold the interpreter lock while the caller signs the next
    batch (``tempfile.mkstemp`` and a file object would take it a dozen times).
    """
    tmp = str(path.parent / f".tmp-{secrets.token_hex(16)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # not inherited: os.open's default
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _make_directories(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the directories whose entries changed."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
    return [path.parent for path in missing]


def _fsync_directory(directory: Path) -> None:
    """Make the renames and creations inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no file name on disk can hold them
        return False
    return True


@implementer(IMetadataStorage)
class LocalStorage:
    """A directory on the local filesystem.

    Writes go to a temporary file in the same directory, are fsynced, then
    renamed over the final name and the directory is fsynced: a reader (or a
    crash) sees the old bytes or the new ones, never a torn file.
    """

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base).resolve()

    @classmethod
    def from_location(cls, location: str) -> LocalStorage:
        return cls(location)

    def _path(self, name: str) -> Path:
        path = self._joined(name)
        # Belt and braces against symlinked directories pointing outside.
        if not path.resolve().is_relative_to(self.base):
            raise StorageError(f"refusing storage name {name!r}: resolves outside {self.base}")
        return path

    def _joined(self, name: str) -> Path:
        pure = PurePosixPath(name)
        if (
            not name
            or "\\" in name
            or "\x00" in name
            or pure.is_absolute()
            or any(part in ("", ".", "..") for part in name.split("/"))
            or not _encodable(name)
        ):
            raise StorageError(f"refusing storage name {name!r}: not a plain relative path")
        return self.base.joinpath(*pure.parts)

    def put(self, name: str, data: bytes) -> None:
        self.put_many({name: data})

    def put_many(self, files: Mapping[str, bytes]) -> None:
        """Write every file atomically; all are durable when this returns.

        Each file is written to a temporary name and fsynced, then renamed into
        place, then each directory whose entries changed is fsynced once: only
        what this call wrote reaches the disk, never the rest of the host's
        I/O (no ``sync()``). The files of a batch are written and fsynced on a
        few threads, so that the filesystem commits their fsyncs together.
        """
        directories: set[Path] = set()  # whose entries change: fsynced after the renames
        staged: list[tuple[str, Path]] = []
        try:
            targets = []
            checked: set[Path] = set()
            for name, data in files.items():
                path = self._joined(name)
                if path.parent not in checked:  # resolved once per directory, not per file
                    if not path.parent.resolve().is_relative_to(self.base):
                        raise StorageError(f"refusing storage name {name!r}: resolves outside {self.base}")
                    directories.update(_make_directories(path.parent))
                    checked.add(path.parent)
                    directories.add(path.parent)
                targets.append((path, data))
            self._stage(targets, staged)
            for tmp, path in staged:
                os.replace(tmp, path)
            staged.clear()
            for directory in sorted(directories):
                _fsync_directory(directory)
        finally:
            for tmp, _ in staged:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    @staticmethod
    def _stage(targets: list[tuple[Path, bytes]], staged: list[tuple[str, Path]]) -> None:
        """Write each ``(path, data)`` to a fsynced temporary file beside it; append them to ``staged``.

        A few threads share the files, each writing and fsyncing its own share
        in turn. ``staged`` keeps the order of ``targets`` (the renames follow
        it) and holds every temporary file written, even when a write fails,
        so that the caller removes them all.
        """
        temporary: list[str | None] = [None] * len(targets)

        def write(share: range) -> BaseException | None:
            try:
                for i in share:
                    temporary[i] = _write_temporary(*targets[i])
            except BaseException as exc:
                return exc
            return None

        threads = min(_SYNC_THREADS, len(targets))
        shares = [range(i, len(targets), threads) for i in range(threads)]
        if threads <= 1:
            failures = [write(share) for share in shares]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                failures = list(pool.map(write, shares))
        staged.extend((tmp, path) for tmp, (path, _) in zip(temporary, targets, strict=True) if tmp is not None)
        for failure in failures:
            if failure is not None:
                raise failure

    def get(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        if not self.base.is_dir():
            return iter(())
        names = (
            p.relative_to(self.base).as_posix()
            for p in self.base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return iter(sorted(n for n in names if n.startswith(prefix)))
