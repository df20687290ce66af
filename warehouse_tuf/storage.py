"""Storage backends for published bytes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from zope.interface import implementer

from warehouse_tuf.interfaces import IMetadataStorage


class StorageError(OSError):
    """Storage refused a write or a name."""


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
    def from_location(cls, location: str) -> "LocalStorage":
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

        One sync for the whole batch instead of one fsync per file: publishing
        16,384 bins would otherwise spend most of its time waiting on the disk.
        """
        staged = []
        directories: set[Path] = set()
        try:
            for name, data in files.items():
                path = self._joined(name)
                if path.parent not in directories:  # resolved once per directory, not per file
                    if not path.parent.resolve().is_relative_to(self.base):
                        raise StorageError(f"refusing storage name {name!r}: resolves outside {self.base}")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    directories.add(path.parent)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            os.sync()
            for tmp, path in staged:
                os.replace(tmp, path)
            staged.clear()
            os.sync()
        finally:
            for tmp, _ in staged:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

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
