"""The publish lock: one publisher at a time, across processes and machines.

PostgreSQL: a session-level advisory lock, released by the server when the
holder's connection dies (kill -9 included). SQLite has no advisory locks;
an flock on a file beside the database plays the same role for every process
that opens that database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

#: A fixed advisory lock key, derived from the name so it is stable and unlikely to collide.
ADVISORY_KEY = zlib.crc32(b"warehouse_tuf.publish")


class LockTimeout(TimeoutError):
    """Another publisher held the lock for longer than the timeout."""


@contextlib.contextmanager
def publish_lock(engine: Engine, timeout: timedelta) -> Iterator[None]:
    deadline = time.monotonic() + timeout.total_seconds()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar():
                conn.commit()
                _wait(deadline)
            conn.commit()
            try:
                yield
            finally:
                if not conn.closed and not conn.invalidated:
                    try:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                        conn.commit()
                    except DBAPIError as error:
                        # The connection died: the server released the lock with it, and
                        # what the holder raised (if anything) is the error worth seeing.
                        if not error.connection_invalidated:
                            raise
        return
    with open(_lock_file(engine), "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                _wait(deadline)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _lock_file(engine: Engine) -> str:
    database = engine.url.database
    if database and database != ":memory:":
        return os.path.abspath(database) + ".tuf-publish.lock"
    return os.path.join(tempfile.gettempdir(), f"warehouse-tuf-{id(engine)}.lock")


def _wait(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise LockTimeout("another publisher holds the TUF publish lock; try again later")
    time.sleep(0.05)
