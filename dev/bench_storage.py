"""``python -m dev bench storage-sync``: the durable write of one refresh's bins, now and before.

A refresh of 16,384 bins ends in ``LocalStorage.put_many`` of 16,384 small
files. This bench times that call alone, alternating in one run between:

- ``after``: today's ``LocalStorage`` (each file fsynced, then its directory);
- ``before``: ``LocalStorage`` as it was at ``--before`` (read from git: one
  ``os.sync()`` of the whole host before the renames and one after);
- ``writes only``: today's ``LocalStorage`` with ``os.fsync`` made a no-op, the
  cost of the writes and renames without any durability (never a mode of the
  extension: the floor the two others are compared with);
- ``after_threadsN`` (``--threads N``, repeatable): today's ``LocalStorage``
  sharing the files among N threads instead of its own count, to see whether
  more concurrent fsyncs share more of the filesystem's commits;
- ``after_fdatasync`` (``--fdatasync``): today's ``LocalStorage`` with
  ``os.fdatasync`` in place of ``os.fsync`` (a new file's size and blocks are
  still committed; only its timestamps are not).

The ratios say what durability costs on this disk, apart from signing. The
files go to a temporary directory: set ``TMPDIR`` to measure another disk.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import click

from dev.bench import bench, report
from warehouse_tuf import storage as storage_module
from warehouse_tuf.storage import LocalStorage

REPOSITORY = Path(__file__).resolve().parent.parent


def _storage_at(revision: str, into: Path) -> ModuleType:
    """``warehouse_tuf/storage.py`` as it was at ``revision``, imported under a name of its own."""
    source = subprocess.run(["git", "-C", str(REPOSITORY), "show", f"{revision}:warehouse_tuf/storage.py"],
                            check=True, capture_output=True).stdout
    path = into / "storage_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("storage_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _fsync_replaced_by(replacement: Callable[[int], None]) -> Iterator[None]:
    real = os.fsync
    os.fsync = replacement
    try:
        yield
    finally:
        os.fsync = real


@contextlib.contextmanager
def _sync_threads(count: int) -> Iterator[None]:
    real = storage_module._SYNC_THREADS
    storage_module._SYNC_THREADS = count
    try:
        yield
    finally:
        storage_module._SYNC_THREADS = real


def _bins(count: int, size: int) -> dict[str, bytes]:
    """``count`` files named and sized like a refresh's bins (version 2 of each)."""
    filler = os.urandom(size // 2).hex().encode()[:size]
    return {f"2.bins-{index:04x}.json": filler for index in range(count)}


@bench.command("storage-sync")
@click.option("--files", default=16384, show_default=True, type=click.IntRange(1), help="Files per write.")
@click.option("--size", default=2048, show_default=True, type=click.IntRange(1), help="Bytes per file.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1))
@click.option("--before", default="31e3b86~1", show_default=True,
              help="The revision whose LocalStorage is 'before' (the last one with os.sync()).")
@click.option("--threads", multiple=True, type=click.IntRange(1),
              help="Also time today's LocalStorage sharing the files among this many threads (repeatable).")
@click.option("--fdatasync", is_flag=True, help="Also time today's LocalStorage with os.fdatasync for os.fsync.")
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON.")
def storage_sync(files: int, size: int, rounds: int, before: str, threads: tuple[int, ...], fdatasync: bool,
                 as_json: bool) -> None:
    """Time LocalStorage.put_many of --files bins: now, at --before, with no fsync at all, and the variants asked."""
    content = _bins(files, size)
    with tempfile.TemporaryDirectory(prefix="tuf-bench-storage-") as work:
        old = _storage_at(before, Path(work))
        runs: dict[str, tuple[type, Callable[[], contextlib.AbstractContextManager]]] = {
            "after": (LocalStorage, contextlib.nullcontext),
            "before": (old.LocalStorage, contextlib.nullcontext),
            "writes_only": (LocalStorage, lambda: _fsync_replaced_by(lambda fd: None)),
        }
        for count in threads:
            runs[f"after_threads{count}"] = (LocalStorage, lambda count=count: _sync_threads(count))
        if fdatasync:
            runs["after_fdatasync"] = (LocalStorage, lambda: _fsync_replaced_by(os.fdatasync))
        seconds: dict[str, list[float]] = {label: [] for label in runs}
        for round_ in range(rounds):
            for label, (storage_class, context) in runs.items():
                directory = Path(work, f"{label}-{round_}")
                directory.mkdir()
                storage = storage_class(directory)
                with context():
                    started = time.monotonic()
                    storage.put_many(content)
                    seconds[label].append(time.monotonic() - started)
                click.echo(f"round {round_ + 1} {label:>16}: {seconds[label][-1]:.2f} s  "
                           f"(load {os.getloadavg()[0]:.2f})", err=True)
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    report({
        "scenario": "storage-sync", "files": files, "bytes_per_file": size, "rounds": rounds,
        "before_revision": before,
        **{f"{label}_median_s": round(value, 3) for label, value in medians.items()},
        **{f"{label}_best_s": round(min(values), 3) for label, values in seconds.items()},
        "after_over_before": round(medians["after"] / medians["before"], 3),
        "after_over_writes_only": round(medians["after"] / medians["writes_only"], 3),
        "fsync_cost_per_file_ms": round((medians["after"] - medians["writes_only"]) / files * 1000, 3),
        **{f"{label}_over_before": round(medians[label] / medians["before"], 3)
           for label in runs if label.startswith("after_")},
    }, as_json)
