"""Concurrency (and the broker outage): the distributed host under many uploaders.

A private Redis, a PostgreSQL database of its own, Celery workers and beat
(``python -m dev worker`` / ``beat``), and uploader processes
(dev/soak/uploader.py) sending real upload and delete requests through the
host's WSGI app. Throughout, a python-tuf client polls every 200 ms: it must
never fail to update (no rollback, no fork), every bin its snapshot names must
be in storage, and one random bin per poll is verified through the client.
At the end, the published targets must equal exactly what the host's database
says: every file at its path with its size and sha256, both simple pages of
every project, and each page listing exactly that project's files.

With an outage, the broker is stopped for that long while uploads go on: the
uploads must still succeed and be published once it is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dev.app import configure, initialize
from dev.models import File, Project, Release
from dev.soak import json_option, soak
from dev.soak.harness import Report, VersionLog, compare_targets, database, database_state, published_targets
from dev.testing.devhost import pending_count, start_dev_process, stop, wait_until
from dev.testing.redis_server import RedisServer
from dev.testing.tufclient import Client


@dataclasses.dataclass
class DistributedHost:
    settings: dict[str, str]
    engine: Engine
    redis: RedisServer

    @property
    def metadata(self) -> Path:
        return Path(self.settings["dev.data"]) / "tuf-metadata"

    @property
    def simple(self) -> Path:
        return Path(self.settings["dev.data"]) / "tuf-simple"

    @property
    def packages(self) -> Path:
        return Path(self.settings["dev.data"]) / "packages"


@contextlib.contextmanager
def distributed_host(workers: int, bins: int) -> Iterator[DistributedHost]:
    """PostgreSQL, a private Redis, ``workers`` Celery workers and beat; all stopped afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="tuf-soak-host-"))
    redis = RedisServer(directory)
    redis.start()
    processes = []
    try:
        with database("postgresql", directory) as url:
            settings = {
                "dev.mode": "distributed", "dev.data": str(directory / "data"), "database.url": url,
                "celery.broker_url": f"redis://127.0.0.1:{redis.port}/0",
                "tuf.bin_count": str(bins), "tuf.publish_interval": "2s",
            }
            initialize(configure(dict(settings)))
            env = {"TUF_DEV_MODE": "distributed", "TUF_DEV_DATA": settings["dev.data"],
                   "TUF_DEV_DATABASE_URL": url, "TUF_DEV_BROKER_URL": settings["celery.broker_url"],
                   "TUF_BIN_COUNT": str(bins), "TUF_PUBLISH_INTERVAL": "2s"}
            for n in range(workers):
                processes.append(start_dev_process("worker", f"--hostname=soak{n}@%h", env=env,
                                                   log=directory / f"worker{n}.log"))
            processes.append(start_dev_process("beat", env=env, log=directory / "beat.log"))
            logs = [directory / f"worker{n}.log" for n in range(workers)]
            wait_until(lambda: all(" ready." in log.read_text() for log in logs), 180, "the workers")
            engine = create_engine(url)
            try:
                yield DistributedHost(settings, engine, redis)
            finally:
                for process in processes:
                    stop(process)
                engine.dispose()
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Poller(threading.Thread):
    """A client refreshing every 200 ms, checking what it trusts against storage."""

    def __init__(self, host: DistributedHost, report: Report, seed: int | None) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.report = report
        self.rng = random.Random(seed)
        self.client = Client(host.metadata, host.packages)
        self.versions = VersionLog()
        self.stopped = threading.Event()
        self.polls = 0
        self.first_poll = self.last_poll = 0.0
        self.bins_verified = 0

    def run(self) -> None:
        due = time.monotonic()
        while not self.stopped.wait(max(0.0, due - time.monotonic())):
            due += 0.2  # every 200 ms, however long a poll takes (a slow one is not made up)
            due = max(due, time.monotonic())
            try:
                self.poll()
            except Exception as exc:  # the observer must not stop silently
                self.report.failure(f"poll {self.polls}: {type(exc).__name__}: {exc}")

    @property
    def mean_interval(self) -> float:
        """Seconds between polls, on average: 0.2 unless the machine could not keep up."""
        return round((self.last_poll - self.first_poll) / max(1, self.polls - 1), 3)

    def poll(self) -> None:
        self.last_poll = time.monotonic()
        self.first_poll = self.first_poll or self.last_poll
        self.polls += 1
        self.report.checks += 1
        try:
            updater = self.client.refresh()
        except Exception as exc:
            self.report.discrepancy(f"poll {self.polls}: the client could not update: "
                                    f"{type(exc).__name__}: {exc}")
            return
        snapshot = json.loads((self.client.cache / "snapshot.json").read_bytes())["signed"]["meta"]
        missing = [f"{meta['version']}.{name}" for name, meta in snapshot.items()
                   if not (self.host.metadata / f"{meta['version']}.{name}").is_file()]
        if missing:
            self.report.discrepancy(f"poll {self.polls}: the snapshot names missing bin(s) {missing[:3]}")
            return
        name, meta = self.rng.choice([item for item in snapshot.items() if item[0] != "targets.json"])
        listed = json.loads((self.host.metadata / f"{meta['version']}.{name}").read_bytes())["signed"]["targets"]
        if listed:
            path = self.rng.choice(sorted(listed))
            info = updater.get_targetinfo(path)
            if info is None or info.hashes != listed[path]["hashes"]:
                self.report.discrepancy(f"poll {self.polls}: the client does not find {path} as {name} lists it")
            self.bins_verified += 1
        if self.polls % 10 == 0:
            self.versions.observe(self.host.metadata, self.report)

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.poll()
        self.versions.observe(self.host.metadata, self.report)
        for folder in (self.client.cache, self.client.downloads):
            shutil.rmtree(folder, ignore_errors=True)


def run_concurrency(uploads: int, *, uploaders: int = 8, workers: int = 4, bins: int = 256,
                    seed: int | None = None, outage: float = 0.0) -> Report:
    scenario = "outage-broker" if outage else "concurrency"
    report = Report(scenario, uploads=uploads,
                    details={"uploaders": uploaders, "workers": workers, "bins": bins})
    started = time.monotonic()
    seed = random.Random(seed).randrange(2**32)
    with distributed_host(workers, bins) as host:
        poller = Poller(host, report, seed)
        poller.start()
        runs = []
        for n in range(uploaders):
            config = {"settings": host.settings, "uploader": n, "seed": seed + n,
                      "uploads": uploads // uploaders + (n < uploads % uploaders)}
            # Below the polling client's priority: the load must not starve what observes it.
            command = ["nice", "-n", "5", sys.executable, "-m", "dev.soak.uploader", json.dumps(config)]
            runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, cwd=Path(__file__).parents[2]))
        if outage:
            wait_until(lambda: _file_count(host.engine) >= uploads // 10, 300, "a tenth of the uploads")
            host.redis.stop()
            report.details["broker_stopped_at"] = round(time.monotonic() - started, 1)
            time.sleep(outage)
            waiting = pending_count(host.engine)
            report.details["pending_when_broker_returned"] = waiting
            report.checks += 1
            if not waiting:
                report.failure("no upload was waiting for the broker: the outage tested nothing")
            host.redis.start()
        counts: dict[str, int] = {}
        for run in runs:
            output, errors = run.communicate()
            if run.returncode != 0:
                last = (errors.strip().splitlines() or ["(no output)"])[-1]
                report.failure(f"an uploader exited {run.returncode}: {last}")
                continue
            result = json.loads(output.strip().splitlines()[-1])
            for key, value in result["counts"].items():
                counts[key] = counts.get(key, 0) + value
            for request in result["failed"]:
                report.failure(request)
        report.details["requests"] = counts
        report.details["uploading_seconds"] = round(time.monotonic() - started, 1)
        try:
            wait_until(lambda: pending_count(host.engine) == 0, 600 + uploads / 10, "every change published")
        except AssertionError as exc:
            report.failure(str(exc))
        poller.stop()
        report.details.update(polls=poller.polls, bins_verified=poller.bins_verified,
                              poll_interval=poller.mean_interval, timestamp=poller.versions.last_timestamp)
        with Session(host.engine) as session:
            _compare_with_host(host, session, report)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _file_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(File))


def run_broker_outage(uploads: int, *, outage: float = 30.0, bins: int = 256, seed: int | None = None) -> Report:
    return run_concurrency(uploads, outage=outage, bins=bins, seed=seed)


def _compare_with_host(host: DistributedHost, session: Session, report: Report) -> None:
    """Published targets = the host database: files, both pages per project, page contents."""
    files = session.execute(
        select(File.path, File.size, File.sha256_digest, File.filename, Project.normalized_name)
        .join(File.release).join(Release.project)
    ).all()
    projects = session.scalars(select(Project.normalized_name)).all()
    published = published_targets(host.metadata)
    expected = {path: (size, sha256) for path, size, sha256, _, _ in files}
    pages = {path: published[path] for name in projects
             for path in (f"{name}/{name}.html", f"{name}/{name}.json") if path in published}
    expected.update(pages)
    compare_targets(expected, published, report, "end: published vs host")
    state = database_state(session)
    compare_targets(expected, state["targets"], report, "end: extension tables vs host")
    report.checks += 1
    if len(pages) != 2 * len(projects):
        report.discrepancy(f"end: {2 * len(projects) - len(pages)} simple page(s) of existing projects unsigned")
    by_project: dict[str, set[str]] = {name: set() for name in projects}
    for _, _, _, filename, name in files:
        by_project[name].add(filename)
    for name in projects:
        path = f"{name}/{name}.json"
        if path not in pages:
            continue
        stored = host.simple / name / f"{pages[path][1]}.{name}.json"
        listed = {entry["filename"] for entry in json.loads(stored.read_bytes())["files"]}
        report.checks += 1
        if listed != by_project[name]:
            report.discrepancy(f"end: the signed page of {name} lists {len(listed)} files, "
                               f"the host has {len(by_project[name])}")
    report.details["files"] = len(files)
    report.details["projects"] = len(projects)


@soak.command()
@click.option("--uploads", default=20_000, show_default=True)
@click.option("--uploaders", default=8, show_default=True, help="Concurrent uploader processes.")
@click.option("--workers", default=4, show_default=True, help="Celery worker processes.")
@click.option("--bins", default=256, show_default=True)
@click.option("--seed", type=int)
@json_option
def concurrency(uploads: int, uploaders: int, workers: int, bins: int, seed: int | None, as_json: bool) -> None:
    """Many uploaders and deleters, several workers: published = host database, clients never fail."""
    run_concurrency(uploads, uploaders=uploaders, workers=workers, bins=bins, seed=seed).emit(as_json)
