"""Outages: storage failing, the database connection dropped mid-publish, the broker stopped.

- ``storage``: the metadata directory is a small tmpfs of its own, made full
  (a filler leaves a random few pages free, so the publish dies at a random
  file) or read-only (remounted); without root, a chmod'ed read-only directory.
  The publish must fail cleanly (readers still see exactly the previous
  state), then succeed once storage is back.
- ``database``: PostgreSQL backends of the publisher are terminated
  (pg_terminate_backend) at a random moment of a publish: all of them, only the
  lock's, or only the session's; or the lock's as the holder writes its
  snapshot, which then stalls while the other publisher may overtake it. Two
  publishers race in each trial. Retried,
  every committed change is published, no version names two contents, and
  timestamp.json never goes back (watched every 5 ms).
- ``broker``: see :mod:`dev.soak.concurrency` (a private Redis stopped mid-run).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import click
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from dev.soak import json_option, soak
from dev.soak.harness import (
    Report,
    Sandbox,
    VersionLog,
    compare_targets,
    database_state,
    published_targets,
    record_file,
    sandbox,
)
from dev.testing.tufclient import Client
from warehouse_tuf.storage import LocalStorage

PAGE = 4096
APPLICATION_NAME = "tuf-soak-publisher"
# Only this database's holders: other databases of the server (another test run) are left alone.
_LOCK_HOLDERS = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                 "(SELECT oid FROM pg_database WHERE datname = current_database())")
KILL_TARGETS = {
    "all": "",
    "lock": f"AND pid IN ({_LOCK_HOLDERS})",
    "lock-stall": f"AND pid IN ({_LOCK_HOLDERS})",  # ... and its holder stalls (LockLosingStorage)
    "session": f"AND pid NOT IN ({_LOCK_HOLDERS})",
}


class MountedStorage:
    """The sandbox's metadata directory on a tmpfs of ``size`` bytes, to fill up or make read-only."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def __enter__(self) -> MountedStorage:
        if os.geteuid() == 0:
            staged = self.path.with_name("metadata-staged")
            self.path.rename(staged)
            self.path.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                           check=True, capture_output=True)
            self.mounted = True
            for item in staged.iterdir():
                (self.path / item.name).write_bytes(item.read_bytes())
        return self

    def __exit__(self, *exc_info) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)

    @property
    def modes(self) -> tuple[str, ...]:
        return ("full", "read-only") if self.mounted else ("read-only",)

    @contextlib.contextmanager
    def failing(self, mode: str, rng: random.Random):
        if mode == "full":
            free = os.statvfs(self.path)
            filler = self.path / ".filler"
            keep = rng.randint(0, 4) * PAGE
            with filler.open("wb") as handle:
                handle.write(b"\0" * max(0, free.f_bavail * free.f_frsize - keep))
            try:
                yield
            finally:
                filler.unlink()
        elif self.mounted:
            self._remount("ro")
            try:
                yield
            finally:
                self._remount("rw")
        else:
            self.path.chmod(0o555)
            try:
                yield
            finally:
                self.path.chmod(0o755)

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, capture_output=True)


def run_storage_outage(trials: int, *, bins: int = 16, seed: int | None = None) -> Report:
    rng = random.Random(seed)
    report = Report("outage-storage", trials=trials, details={"bins": bins})
    started = time.monotonic()
    failed: dict[str, int] = {}
    with sandbox("sqlite", bins) as box, MountedStorage(box.metadata, 8 * 2**20) as storage:
        engine = create_engine(box.url)
        session = Session(engine)
        manager = box.manager(session)
        versions = VersionLog()
        client = box.client()
        client.refresh()
        expected: dict = {}
        report.details["modes"] = storage.modes
        for trial in range(trials):
            for i in range(rng.randint(1, 6)):
                path, info = record_file(manager, box.packages, f"t{trial}-{i}.whl")
                expected[path] = info
            session.commit()
            mode = storage.modes[trial % len(storage.modes)]
            before = published_targets(box.metadata)
            timestamp = (box.metadata / "timestamp.json").read_bytes()
            with storage.failing(mode, rng):
                try:
                    manager.publish()
                except OSError:
                    failed[mode] = failed.get(mode, 0) + 1
                else:
                    before = None  # enough room was left: it published, nothing to compare
                report.checks += 1
                if before is not None:
                    if (box.metadata / "timestamp.json").read_bytes() != timestamp \
                            or published_targets(box.metadata) != before:
                        report.discrepancy(f"trial {trial} ({mode}): a failed publish is visible")
                    _client_updates(client, report, f"trial {trial} ({mode}) during the outage")
            versions.observe(box.metadata, report)
            manager.publish()  # the retry, once storage is back
            versions.observe(box.metadata, report)
            _client_updates(client, report, f"trial {trial} ({mode}) after the retry")
            state = database_state(session)
            compare_targets(expected, state["targets"], report, f"trial {trial}: database")
            compare_targets(expected, published_targets(box.metadata), report, f"trial {trial}: published")
        session.close()
        engine.dispose()
    report.details["failed_publishes"] = failed
    report.seconds = round(time.monotonic() - started, 1)
    return report


def run_database_outage(trials: int, *, bins: int = 16, seed: int | None = None) -> Report:
    rng = random.Random(seed)
    report = Report("outage-database", trials=trials, details={"bins": bins})
    started = time.monotonic()
    dropped: dict[str, int] = {}
    with sandbox("postgresql", bins) as box:
        admin = create_engine(box.url, isolation_level="AUTOCOMMIT")
        engine = create_engine(box.url, pool_pre_ping=True,
                               connect_args={"application_name": APPLICATION_NAME})
        versions = VersionLog()
        client = box.client()
        client.refresh()
        expected: dict = {}
        watcher = TimestampWatcher(box.metadata, report)
        watcher.start()
        try:
            for trial in range(trials):
                with Session(engine) as session:
                    manager = box.manager(session)
                    for i in range(rng.randint(5, 60)):
                        path, info = record_file(manager, box.packages, f"t{trial}-{i}.whl")
                        expected[path] = info
                    session.commit()
                which = rng.choice(sorted(KILL_TARGETS))
                errors = _race_publishers(box, engine, admin, which, rng.uniform(0, 0.08), dropped)
                versions.observe(box.metadata, report)
                _client_updates(client, report, f"trial {trial} ({which}) after the drop")
                with Session(engine) as session:  # the retry, as the task's next run
                    box.manager(session).publish()
                    state = database_state(session)
                versions.observe(box.metadata, report)
                _client_updates(client, report, f"trial {trial} ({which}) after the retry")
                report.details.setdefault("publish_errors", {})
                for error in errors:
                    report.details["publish_errors"][error] = report.details["publish_errors"].get(error, 0) + 1
                report.checks += 1
                if state["pending"] or state["unfinished"]:
                    report.discrepancy(f"trial {trial}: {state['pending']} pending, "
                                       f"{len(state['unfinished'])} unfinished after the retry")
                compare_targets(expected, state["targets"], report, f"trial {trial}: database")
                compare_targets(expected, published_targets(box.metadata), report, f"trial {trial}: published")
        finally:
            watcher.stop()
            engine.dispose()
            admin.dispose()
    report.details["backends_terminated"] = dropped
    report.details["timestamp"] = versions.last_timestamp
    report.seconds = round(time.monotonic() - started, 1)
    return report


class LockLosingStorage(LocalStorage):
    """Whichever publisher writes a snapshot first loses its lock's connection there, then stalls.

    The other publisher, waiting for the lock, gets it and may publish in full
    meanwhile (a publisher stalled by slow storage or a long pause).
    """

    def __init__(self, base: Path, admin, stall: float, dropped: dict) -> None:
        super().__init__(base)
        self.admin, self.stall, self.dropped = admin, stall, dropped
        self.fired = threading.Event()

    def put_many(self, files) -> None:
        if not self.fired.is_set() and any(name.endswith(".snapshot.json") for name in files):
            self.fired.set()
            _terminate(self.admin, "lock-stall", self.dropped)
            time.sleep(self.stall)
        super().put_many(files)


def _race_publishers(box: Sandbox, engine, admin, which: str, delay: float, dropped: dict) -> list[str]:
    """Two publishers at once; after ``delay``, terminate the chosen backends of both."""
    errors: list[str] = []
    storage = LockLosingStorage(box.metadata, admin, delay * 5, dropped) if which == "lock-stall" else None

    def publish() -> None:
        try:
            with Session(engine) as session:
                box.manager(session, storage).publish()
        except Exception as exc:  # what a dropped connection raises: the task is retried
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for thread in threads:
        thread.start()
    if storage is None:
        time.sleep(delay)
        _terminate(admin, which, dropped)
    for thread in threads:
        thread.join()
    return errors


def _terminate(admin, which: str, dropped: dict) -> None:
    with admin.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = :name {KILL_TARGETS[which]}"
        ), {"name": APPLICATION_NAME}).scalar()
    dropped[which] = dropped.get(which, 0) + killed


class TimestampWatcher(threading.Thread):
    """Reads timestamp.json every 5 ms: its version must never go back, even for a moment."""

    def __init__(self, metadata: Path, report: Report) -> None:
        super().__init__(daemon=True)
        self.metadata = metadata
        self.report = report
        self.stopped = threading.Event()
        self.reads = 0

    def run(self) -> None:
        import json

        highest = 0
        seen_back: set[tuple[int, int]] = set()
        while not self.stopped.wait(0.005):
            try:
                version = json.loads((self.metadata / "timestamp.json").read_bytes())["signed"]["version"]
            except (OSError, ValueError) as exc:
                self.report.discrepancy(f"timestamp.json unreadable: {exc}")
                continue
            self.reads += 1
            if version < highest and (highest, version) not in seen_back:
                seen_back.add((highest, version))
                self.report.discrepancy(f"timestamp.json went back from {highest} to {version}")
            highest = max(highest, version)

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.report.details["timestamp_reads"] = self.reads


def _client_updates(client: Client, report: Report, label: str) -> None:
    report.checks += 1
    try:
        client.refresh()
    except Exception as exc:
        report.discrepancy(f"{label}: a client could not update: {type(exc).__name__}: {exc}")


@soak.command()
@click.option("--part", type=click.Choice(["storage", "database", "broker", "all"]), default="all",
              show_default=True)
@click.option("--trials", default=50, show_default=True, help="Trials of the storage and database parts.")
@click.option("--uploads", default=2000, show_default=True, help="Uploads of the broker part.")
@click.option("--outage", default=30.0, show_default=True, help="Seconds the broker is stopped.")
@click.option("--bins", default=16, show_default=True)
@click.option("--seed", type=int)
@json_option
def outage(part: str, trials: int, uploads: int, outage: float, bins: int, seed: int | None,
           as_json: bool) -> None:
    """Storage full or read-only, database connections dropped, broker stopped: nothing lost."""
    reports = []
    if part in ("storage", "all"):
        reports.append(run_storage_outage(trials, bins=bins, seed=seed))
    if part in ("database", "all"):
        reports.append(run_database_outage(trials, bins=bins, seed=seed))
    if part in ("broker", "all"):
        from dev.soak.concurrency import run_broker_outage

        reports.append(run_broker_outage(uploads, outage=outage, bins=bins, seed=seed))
    Report.combine("outage", reports).emit(as_json)
