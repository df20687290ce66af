"""The development host's file storages (archive and files), shaped like Warehouse's.

Warehouse's ``IFileStorage`` stores from a file on disk and reads back a file
object, so an upload never has to be held in memory: ``store(path, file_path)``
and ``get(path)``. Names are target paths, checked by the extension's one path
rule, so a name from a URL can never reach outside the storage root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from warehouse_tuf.targets import InvalidTargetError, validate_path


class LocalFileStorage:
    """Files under one directory; ``store`` is atomic (a temporary file renamed into place)."""

    def __init__(self, base: str | os.PathLike[str]) -> None:
        self.base = Path(base)

    def _path(self, path: str) -> Path:
        try:
            return self.base / validate_path(path)
        except InvalidTargetError as exc:
            raise FileNotFoundError(str(exc)) from None

    def get(self, path: str) -> BinaryIO:
        """The stored file, open for reading; FileNotFoundError when absent or not a valid name."""
        return open(self._path(path), "rb")

    def store(self, path: str, file_path: str | os.PathLike[str]) -> None:
        """Copy the file at ``file_path`` to ``path``."""
        destination = self._path(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, open(file_path, "rb") as source:
                shutil.copyfileobj(source, out)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
