"""``python -m dev bench <scenario>``: what publishing costs at PyPI scale, measured.

Each scenario builds a fresh development host (embedded: SQLite and tasks in
process; distributed: PostgreSQL, a private Redis and ``python -m dev worker``
processes), loads it with realistic targets (``ab/cd/<60 hex>/<project>-<version>-py3-none-any.whl``),
measures one thing, then checks what was published with python-tuf's ngclient.
Figures are printed as text; ``--json`` adds them as one JSON object on the
last line. Nothing here runs in the test suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from dev.cli import dev
from warehouse_tuf.models import PendingChange, RoleVersion, Target
from warehouse_tuf.targets import bin_index

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TUF_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_ROWS_PER_INSERT = 20_000


# -- synthetic distribution files ----------------------------------------------------------


def content(i: int) -> bytes:
    """The bytes of synthetic file ``i`` (small: only metadata sizes matter here)."""
    return f"warehouse-tuf bench file {i}\n".encode()


def project_name(i: int, projects: int) -> str:
    return f"bench-project-{i % projects}"


def file_row(i: int, projects: int) -> dict[str, Any]:
    """Host ``File`` columns of synthetic file ``i``, with Warehouse's path layout."""
    data = content(i)
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    filename = f"bench_project_{i % projects}-1.{i // projects}-py3-none-any.whl"
    return {
        "path": f"{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/{filename}", "filename": filename,
        "size": len(data), "md5_digest": hashlib.md5(data).hexdigest(),
        "sha256_digest": hashlib.sha256(data).hexdigest(), "blake2_256_digest": blake2,
    }


def target_row(i: int, projects: int, bits: int) -> dict[str, Any]:
    """A ``tuf_targets`` row for synthetic file ``i``."""
    row = file_row(i, projects)
    return {
        "path": row["path"], "bin_index": bin_index(row["path"], bits), "length": row["size"],
        "hashes": {"sha256": row["sha256_digest"]}, "kind": "file",
        "project": project_name(i, projects), "release": f"1.{i // projects}",
    }


def _insert_rows(engine: Any, table: Any, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in rows:
            batch.append(row)
            if len(batch) == _ROWS_PER_INSERT:
                conn.execute(insert(table), batch)
                batch = []
        if batch:
            conn.execute(insert(table), batch)


def seed_targets(engine: Any, first: int, count: int, projects: int, bits: int) -> None:
    """Targets straight into ``tuf_targets`` (not yet in any signed bin)."""
    rows = (target_row(i, projects, bits) for i in range(first, first + count))
    _insert_rows(engine, Target.__table__, rows)


def seed_pending(engine: Any, first: int, count: int, projects: int) -> None:
    """Pending additions, as uploads record them, for the next publish."""
    def rows() -> Iterator[dict[str, Any]]:
        for i in range(first, first + count):
            row = file_row(i, projects)
            yield {"kind": "add", "path": row["path"], "length": row["size"],
                   "hashes": {"sha256": row["sha256_digest"]}, "project": project_name(i, projects),
                   "release": f"1.{i // projects}", "created_at": datetime_now()}
    _insert_rows(engine, PendingChange.__table__, rows())


def seed_host(engine: Any, files: int, projects: int, first_file: int = 0) -> None:
    """Host projects (one release ``1.0`` each) and ``files`` files spread over them."""
    from dev.models import Base, File, Project, Release

    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        if not conn.scalar(select(func.count()).select_from(Project)):
            conn.execute(insert(Project), [
                {"id": p + 1, "name": f"bench-project-{p}"}  # normalized_name: the trigger's
                for p in range(projects)
            ])
            conn.execute(insert(Release), [
                {"id": p + 1, "project_id": p + 1, "version": "1.0", "yanked": False, "yanked_reason": ""}
                for p in range(projects)
            ])
    rows = ({**file_row(i, projects), "release_id": i % projects + 1, "python_version": "py3",
             "packagetype": "bdist_wheel"} for i in range(first_file, first_file + files))
    _insert_rows(engine, File.__table__, rows)


def datetime_now() -> Any:
    from warehouse_tuf.models import utcnow

    return utcnow()


# -- the host under test -----------------------------------------------------------------------


class BenchHost:
    """A fresh development host in a temporary directory; everything it started stops on close."""

    def __init__(self, mode: str, bins: int, workers: int, **settings: Any) -> None:
        self.mode = mode
        self.data = Path(tempfile.mkdtemp(prefix=f"tuf-bench-{mode}-"))
        self.processes: list[subprocess.Popen] = []
        self.database: str | None = None
        self.env = {
            # Embedded tasks in a process of their own, as ``serve`` runs them.
            "TUF_DEV_MODE": mode, "TUF_DEV_DATA": str(self.data), "TUF_BIN_COUNT": str(bins),
            "TUF_DEV_EMBEDDED_TASKS": "process",
            **{f"TUF_{key.upper()}": str(value) for key, value in settings.items()},
        }
        if mode == "distributed":
            self._start_services(workers)
        os.environ.update(self.env)  # this process, the uploaders and the CLI all see one host
        from dev.app import configure, initialize
        from dev.tasks import start_embedded_tasks

        started = time.monotonic()
        self.config = configure()
        initialize(self.config)
        self.bootstrap_s = time.monotonic() - started
        start_embedded_tasks(self.config.registry["celery.app"])
        self.engine = self.config.registry["sqlalchemy.engine"]
        self.bits = bins.bit_length() - 1
        self.metadata = self.data / "tuf-metadata"

    def _start_services(self, workers: int) -> None:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"tuf_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.database = name
        from dev.testing.devhost import free_port

        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.data)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        self.processes.append(redis)
        self.env["TUF_DEV_DATABASE_URL"] = create_engine(POSTGRES_ADMIN_URL).url.set(
            database=name).render_as_string(hide_password=False)
        self.env["TUF_DEV_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
        self.workers = workers

    def start_workers(self) -> None:
        """The Celery worker processes (distributed mode), once the repository exists."""
        for n in range(getattr(self, "workers", 0)):
            log = (self.data / f"worker{n}.log").open("ab")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "dev", "worker", f"--hostname=bench{n}@%h", "--loglevel=WARNING"],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            ))
        time.sleep(3 if self.mode == "distributed" else 0)

    @contextlib.contextmanager
    def service(self) -> Iterator[Any]:
        from pyramid.scripting import prepare

        from warehouse_tuf.interfaces import ITUFService

        env = prepare(registry=self.config.registry)
        try:
            yield env["request"].find_service(ITUFService, context=None)
        finally:
            env["closer"]()

    def pending(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(PendingChange))

    def close(self) -> None:
        from dev.tasks import stop_embedded_tasks
        from dev.testing.devhost import stop

        if self.mode == "embedded":
            stop_embedded_tasks(self.config.registry["celery.app"])  # its task process holds the database
        for process in reversed(self.processes):
            stop(process)
        self.engine.dispose()
        if self.database:
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            admin.dispose()
        for key in self.env:
            os.environ.pop(key, None)
        shutil.rmtree(self.data, ignore_errors=True)


@contextlib.contextmanager
def bench_host(mode: str, bins: int, workers: int = 2, **settings: Any) -> Iterator[BenchHost]:
    host = BenchHost(mode, bins, workers, **settings)
    try:
        yield host
    finally:
        host.close()


# -- checking with ngclient ------------------------------------------------------------------


def verify(host: BenchHost, files: list[int], projects: int) -> int:
    """Refresh a fresh ngclient and download ``files`` (verified); returns how many."""
    from dev.testing.tufclient import Client

    targets = Path(tempfile.mkdtemp(prefix="tuf-bench-targets-"))
    try:
        for i in files:
            row = file_row(i, projects)
            (targets / row["path"]).parent.mkdir(parents=True, exist_ok=True)
            (targets / row["path"]).write_bytes(content(i))
        client = Client(host.metadata, targets)
        for i in files:
            if client.download(file_row(i, projects)["path"]) != content(i):
                raise click.ClickException(f"ngclient did not verify synthetic file {i}")
    finally:
        shutil.rmtree(targets, ignore_errors=True)
    return len(files)


def sample(total: int, count: int = 20, first: int = 0) -> list[int]:
    rng = random.Random(total)
    return sorted({first, first + total - 1, *(rng.randrange(first, first + total) for _ in range(count))})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(figures: dict[str, Any], as_json: bool) -> None:
    for key, value in figures.items():
        click.echo(f"{key:>22}: {value}")
    if as_json:
        click.echo(json.dumps(figures, sort_keys=True))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


# -- the command group -----------------------------------------------------------------------


@dev.group()
def bench() -> None:
    """Benchmarks at PyPI scale (16,384 bins); see README "Performance"."""


def _common(func: Any) -> Any:
    for option in reversed((
        click.option("--mode", type=click.Choice(["embedded", "distributed"]), default="embedded",
                     show_default=True),
        click.option("--bins", default=16384, show_default=True, type=click.IntRange(2)),
        click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object on the last line."),
    )):
        func = option(func)
    return func


def _manager(host: BenchHost, *, fan_out: bool = True) -> Any:
    """A manager on a plain session (no request), with the host's storage and fan-out."""
    from warehouse_tuf.services import TUFManager

    registry = host.config.registry
    return TUFManager(
        Session(host.engine), registry["tuf.settings"], registry["tuf.storage"], registry["tuf.simple_storage"],
        models=registry["tuf.models"], dispatch=registry["tuf.dispatch"] if fan_out else None,
    )


def _publish_seeded(host: BenchHost, count: int, projects: int) -> float:
    """Make ``count`` synthetic files published targets; returns the seconds the re-sign took."""
    seed_targets(host.engine, 0, count, projects, host.bits)
    started = time.monotonic()
    _manager(host).resign_bins()
    return time.monotonic() - started


@bench.command()
@_common
@click.option("--targets", default=1_000_000, show_default=True, help="Targets in the bins.")
@click.option("--workers", default=2, show_default=True,
              help="Celery worker processes signing bins (distributed mode; embedded signs in process).")
def refresh(mode: str, bins: int, as_json: bool, targets: int, workers: int) -> None:
    """Re-sign every bin, holding --targets targets: wall time."""
    projects = max(1, targets // 20)
    with bench_host(mode, bins, workers) as host:
        seed_targets(host.engine, 0, targets, projects, host.bits)
        host.start_workers()
        manager = _manager(host)
        started = time.monotonic()
        result = manager.resign_bins()
        wall = time.monotonic() - started
        verified = verify(host, sample(targets), projects)
        report({
            "scenario": "refresh", "mode": mode, "bins": bins, "targets": targets,
            "workers": workers if mode == "distributed" else 0, "bins_signed": len(result.bins),
            "wall_s": round(wall, 2), "peak_rss_mb": peak_rss_mb(), "ngclient_verified": verified,
        }, as_json)


@bench.command()
@_common
@click.option("--targets", default=100_000, show_default=True, help="Targets in the bins.")
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (distributed mode).")
def rotation(mode: str, bins: int, as_json: bool, targets: int, workers: int) -> None:
    """``tuf install`` of root v2 and targets v2 trusting a new online key (the handover): wall time."""
    from warehouse_tuf import signing

    projects = max(1, targets // 20)
    with bench_host(mode, bins, workers) as host:
        _publish_seeded(host, targets, projects)
        host.start_workers()
        manager = _manager(host)
        keys = Path(manager.settings.dev_keys_path)
        root, targets_key, old = (signing.load_key_file(keys / f"{role}.pem") for role in ("root", "targets", "online"))
        new_path = host.data / "online2.pem"
        signing.generate_key_file(new_path)
        new = signing.load_key_file(new_path)
        root_bytes, targets_bytes = manager.build_offline_roles(
            root_keys=[root.public_key], root_threshold=1, targets_keys=[targets_key.public_key],
            targets_threshold=1, online_keys=[new.public_key], online_threshold=1,
            sign_with=[root], sign_targets_with=[targets_key], version=2,
        )
        signers = (f"{old.public_key.keyid}=file2:{keys / 'online.pem'}", f"{new.public_key.keyid}=file2:{new_path}")
        started = time.monotonic()
        result = manager.install(root_bytes, targets_bytes, signers)
        wall = time.monotonic() - started
        verified = verify(host, sample(targets), projects)
        report({
            "scenario": "rotation", "mode": mode, "bins": bins, "targets": targets,
            "workers": workers if mode == "distributed" else 0, "online_key_rotated": result.online_key_rotated,
            "root_version": result.root_version, "wall_s": round(wall, 2), "peak_rss_mb": peak_rss_mb(),
            "ngclient_verified": verified,
        }, as_json)


def _counting_client(metadata: Path, targets: Path) -> Any:
    """An ngclient user whose fetcher counts the bytes it downloads (``client.fetcher.bytes``)."""
    from dev.testing.tufclient import Client, LocalFetcher

    class CountingFetcher(LocalFetcher):
        bytes = 0

        def _fetch(self, url: str) -> Iterator[bytes]:
            for chunk in super()._fetch(url):
                self.bytes += len(chunk)
                yield chunk

    client = Client(metadata, targets)
    client.fetcher = CountingFetcher(client.fetcher.roots)
    return client


@bench.command()
@_common
@click.option("--targets", default=1_000_000, show_default=True, help="Targets in the bins.")
def sizes(mode: str, bins: int, as_json: bool, targets: int) -> None:
    """Bytes of each role, and what a new client downloads to verify one target."""
    projects = max(1, targets // 20)
    with bench_host(mode, bins) as host:
        host.start_workers()
        _publish_seeded(host, targets, projects)
        timestamp = host.metadata / "timestamp.json"
        snapshot_version = json.loads(timestamp.read_bytes())["signed"]["meta"]["snapshot.json"]["version"]
        with Session(host.engine) as s:
            average_bin = s.scalar(select(func.avg(RoleVersion.length)).where(RoleVersion.bin_index.is_not(None)))
        i = sample(targets, 1)[-1]
        path = file_row(i, projects)["path"]
        targets_dir = Path(tempfile.mkdtemp(prefix="tuf-bench-targets-"))
        (targets_dir / path).parent.mkdir(parents=True)
        (targets_dir / path).write_bytes(content(i))
        client = _counting_client(host.metadata, targets_dir)
        root_bytes = len(client._bootstrap)  # the trust anchor ships with the client
        if client.download(path) != content(i):
            raise click.ClickException("ngclient did not verify the target")
        shutil.rmtree(targets_dir, ignore_errors=True)
        report({
            "scenario": "sizes", "mode": mode, "bins": bins, "targets": targets,
            "root_bytes": root_bytes, "timestamp_bytes": timestamp.stat().st_size,
            "snapshot_bytes": (host.metadata / f"{snapshot_version}.snapshot.json").stat().st_size,
            "targets_bytes": (host.metadata / "1.targets.json").stat().st_size,
            "average_bin_bytes": round(float(average_bin)),
            "new_client_metadata_bytes": client.fetcher.bytes - len(content(i)),
            "ngclient_verified": 1,
        }, as_json)


@bench.command()
@_common
@click.option("--published", default=100_000, show_default=True, help="Targets published before the run.")
@click.option("--naive", "naive_uploads", default=200, show_default=True,
              help="Uploads through the naive path (one publish each).")
@click.option("--uploads", default=10_000, show_default=True, help="Uploads through the coalesced path.")
def baseline(mode: str, bins: int, as_json: bool, published: int, naive_uploads: int, uploads: int) -> None:
    """The naive path (bin, snapshot and timestamp re-signed per upload) against one coalesced publish."""
    projects = max(1, published // 20)
    with bench_host(mode, bins) as host:
        host.start_workers()
        _publish_seeded(host, published, projects)
        manager = _manager(host, fan_out=False)

        def upload(i: int) -> None:
            row = file_row(i, projects)
            manager.record_target(row["path"], row["size"], {"sha256": row["sha256_digest"]})
            manager.db.commit()

        first = published
        started = time.monotonic()
        for i in range(first, first + naive_uploads):
            upload(i)
            manager.publish()  # PR #10870's shape: every upload re-signs its bin, snapshot, timestamp
        naive_s = time.monotonic() - started
        first += naive_uploads
        started = time.monotonic()
        for i in range(first, first + uploads):
            upload(i)
        recorded = time.monotonic()
        result = manager.publish()
        coalesced_s = time.monotonic() - started
        publish_s = time.monotonic() - recorded
        verified = verify(host, sample(naive_uploads, 5, published) + sample(uploads, 10, first), projects)
        naive_rate, rate = naive_uploads / naive_s, uploads / coalesced_s
        report({
            "scenario": "baseline", "mode": mode, "bins": bins, "published": published,
            "naive_uploads": naive_uploads, "naive_targets_per_s": round(naive_rate, 1),
            "uploads": uploads, "bins_signed": len(result.bins), "targets_per_s": round(rate, 1),
            "publish_s": round(publish_s, 2), "publish_only_targets_per_s": round(uploads / publish_s, 1),
            "ratio_vs_baseline": round(rate / naive_rate, 1), "ngclient_verified": verified,
        }, as_json)


@bench.command()
@_common
@click.option("--published", default=100_000, show_default=True, help="Targets published before the run.")
@click.option("--uploads", default=200, show_default=True, help="Uploads, each published before the next.")
@click.option("--profile", "profile_top", default=0, show_default=True,
              help="Run under cProfile and print this many functions by cumulative time.")
def single(mode: str, bins: int, as_json: bool, published: int, uploads: int, profile_top: int) -> None:
    """Each upload published alone: commit-to-signed latency (p50, p99) and targets/s."""
    import cProfile
    import pstats

    projects = max(1, published // 20)
    with bench_host(mode, bins) as host:
        host.start_workers()
        _publish_seeded(host, published, projects)
        manager = _manager(host, fan_out=False)
        profiler = cProfile.Profile() if profile_top else None
        latencies = []
        started = time.monotonic()
        for i in range(published, published + uploads):
            row = file_row(i, projects)
            manager.record_target(row["path"], row["size"], {"sha256": row["sha256_digest"]})
            manager.db.commit()
            committed = time.perf_counter()
            if profiler:
                profiler.enable()
            result = manager.publish()
            if profiler:
                profiler.disable()
            latencies.append(time.perf_counter() - committed)
            if len(result.bins) != 1:
                raise click.ClickException(f"upload {i} was published with {len(result.bins)} bins, not 1")
        wall = time.monotonic() - started
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile_top)
        verified = verify(host, sample(uploads, 10, published), projects)
        ms = [t * 1000 for t in latencies]
        report({
            "scenario": "single", "mode": mode, "bins": bins, "published": published, "uploads": uploads,
            "profiled": bool(profiler), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(percentile(ms, 0.99), 1), "targets_per_s": round(uploads / wall, 1),
            "ngclient_verified": verified,
        }, as_json)


@bench.command()
@_common
@click.option("--files", default=1_000_000, show_default=True, help="Files the host already has.")
@click.option("--projects", default=10_000, show_default=True, help="Projects they belong to (one page pair each).")
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (distributed mode).")
def backfill(mode: str, bins: int, as_json: bool, files: int, projects: int, workers: int) -> None:
    """``tuf backfill`` of --files existing files into a fresh repository: wall time, peak RSS."""
    with bench_host(mode, bins, workers) as host:
        seed_host(host.engine, files, projects)
        host.start_workers()
        started = time.monotonic()
        # The operator's command, in a process of its own: its peak RSS is the backfill's.
        run = subprocess.run([sys.executable, "-m", "dev", "tuf", "backfill"], cwd=ROOT,
                             env={**os.environ, **host.env}, capture_output=True, text=True)
        wall = time.monotonic() - started
        if run.returncode != 0:
            raise click.ClickException(f"tuf backfill failed: {run.stderr[-2000:]}")
        summary = run.stdout.strip().splitlines()[-1]
        click.echo(summary)
        stages = {f"{stage}_s": float(seconds) for stage, seconds in re.findall(r"(\w+) ([\d.]+)s[,)]", summary)}
        verified = verify(host, sample(files), projects)
        report({
            "scenario": "backfill", "mode": mode, "bins": bins, "files": files, "projects": projects,
            "wall_s": round(wall, 2), **stages, "peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),
            "ngclient_verified": verified,
        }, as_json)


def upload(session: Any, i: int, projects: int) -> None:
    """What the upload view does with the database: find the release, add the file and its
    journal entry, commit."""
    from sqlalchemy.orm import joinedload

    from dev.models import File, JournalEntry, Release

    release = session.scalars(
        select(Release).options(joinedload(Release.project)).where(Release.id == i % projects + 1)
    ).one()
    row = file_row(i, projects)
    session.add(File(**row, release=release, python_version="py3", packagetype="bdist_wheel"))
    session.add(JournalEntry(name=release.project.name, version=release.version,
                             action=f"add py3 file {row['filename']}"))
    session.commit()


@contextlib.contextmanager
def host_session(sessions: Any, engine: Any) -> Iterator[Any]:
    """A session of the host's class on its own Connection, as ``request.db``."""
    with engine.connect() as connection, sessions(bind=connection) as session:
        yield session


def record(config: Any, session: Any, i: int, projects: int) -> None:
    """The extension's part of an upload alone: what its hooks add (the pending change), commit,
    then its after-commit hook (which sends a publish message only when no publisher is requested)."""
    from warehouse_tuf import pending
    from warehouse_tuf.listeners import PENDING_KEY, queue_publish

    row = file_row(i, projects)
    pending.record(session.connection(), [pending.target_added(
        row["path"], row["size"], {"sha256": row["sha256_digest"]}, ("sha256",),
        project=project_name(i, projects), release=f"1.{i // projects}",
    )])
    session.info[PENDING_KEY] = True
    session.commit()
    queue_publish(config, session)


def commit_only(session: Any, i: int, projects: int) -> None:
    """One host row committed, nothing recorded: what a commit costs on this machine without the extension."""
    from dev.models import JournalEntry

    session.add(JournalEntry(name=project_name(i, projects), version="1.0", action=f"bench commit {i}"))
    session.commit()


def count_messages(config: Any) -> list[int]:
    """Counts the publish messages this process sends from now on (a one-item list, kept up to date)."""
    task = config.registry["tuf.publish_task"]
    sent = [0]
    send = task.delay

    def counted(*args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return send(*args, **kwargs)

    task.delay = counted
    return sent


def _uploader(env: dict[str, str], level: str, indexes: list[int], projects: int, rate: float,
              start_at: float, results: Any) -> None:
    """An uploader process; ``rate`` 0 means as fast as it can.

    ``host``: commits one host ``File`` per upload as the upload view does;
    the extension's session hooks record it and queue the publish task.
    ``extension``: only what the hooks add (:func:`record`). ``commit``: one
    host row and no extension (:func:`commit_only`), nothing to publish. Publish tasks
    run in the uploader's task process in embedded mode (as ``serve`` runs
    them), on the workers in distributed mode.
    """
    os.environ.update(env)
    from dev.app import configure
    from dev.tasks import start_embedded_tasks, stop_embedded_tasks

    config = configure()
    start_embedded_tasks(config.registry["celery.app"])
    sessions, engine = config.registry["sqlalchemy.sessionmaker"], config.registry["sqlalchemy.engine"]
    committed = []
    messages = count_messages(config)
    time.sleep(max(0.0, start_at - time.time()))
    for n, i in enumerate(indexes):
        if rate:
            time.sleep(max(0.0, start_at + n / rate - time.time()))
        if level == "host":
            with host_session(sessions, engine) as session:
                upload(session, i, projects)
        elif level == "commit":
            with Session(engine) as session:  # not the host's session class: no hook sees it
                commit_only(session, i, projects)
        else:
            with Session(engine) as session:
                record(config, session, i, projects)
        committed.append((file_row(i, projects)["path"], time.time()))
    results.put((committed, messages[0]))
    if env["TUF_DEV_MODE"] == "embedded":
        stop_embedded_tasks(config.registry["celery.app"])
    engine.dispose()


# A spawned process imports what it runs first: ``dev.bench`` before ``dev.cli`` would import
# ``dev.bench_upload`` while this module is half initialized. So the uploader runs this code.
_SPAWNED_UPLOADER = "import dev.cli\nfrom dev.bench import _uploader\n_uploader(*args)"


class _PendingWatcher(threading.Thread):
    """Polls the pending additions: an upload is published once a poll no longer sees it."""

    def __init__(self, engine: Any) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.polls: list[tuple[float, set[str]]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        query = select(PendingChange.path).where(PendingChange.kind == "add")
        with self.engine.connect() as conn:
            while not self.stopped.is_set():
                started = time.time()
                self.polls.append((started, set(conn.scalars(query))))
                conn.commit()
                self.stopped.wait(0.02)

    def published_at(self, path: str, committed: float) -> float:
        """The start of the first poll after the commit that no longer saw ``path`` pending."""
        for started, pending in self.polls:
            if started > committed and path not in pending:
                return started
        raise click.ClickException(f"{path} was never seen published")


def _upload_run(host: BenchHost, level: str, first: int, count: int, uploaders: int, projects: int,
                rate: float) -> tuple[list[tuple[str, float]], _PendingWatcher, float, int]:
    """Run ``uploaders`` processes committing ``count`` uploads; wait until all are published.

    Returns the commits (path, time), the watcher, the seconds from start to all published,
    and the publish messages the uploaders sent.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 8  # every process imported and configured by then
    shares = [list(range(first + n, first + count, uploaders)) for n in range(uploaders)]
    processes = [context.Process(target=exec, args=(_SPAWNED_UPLOADER, {"args": (
        host.env, level, share, projects, rate / uploaders, start_at, results)})) for share in shares]
    watcher = _PendingWatcher(host.engine)
    for process in processes:
        process.start()
    watcher.start()
    shares_done = [results.get(timeout=3600) for _ in processes]
    committed = [item for share, _ in shares_done for item in share]
    messages = sum(sent for _, sent in shares_done)
    deadline = time.time() + 600
    while host.pending() and time.time() < deadline:
        time.sleep(0.02)
    done = time.time()
    time.sleep(0.1)
    watcher.stopped.set()
    watcher.join()
    for process in processes:
        process.join(timeout=600)
    if host.pending():
        raise click.ClickException("uploads were still pending after 10 minutes")
    return committed, watcher, done - start_at, messages


def _prepare_uploads(host: BenchHost, published: int, projects: int) -> None:
    """Published targets to start from, and the host projects the uploads go to."""
    seed_host(host.engine, 0, projects)
    seed_pending(host.engine, 0, published, projects)
    _manager(host).publish()


def _uploads(func: Any) -> Any:
    for option in reversed((
        click.option("--published", default=100_000, show_default=True, help="Targets already published."),
        click.option("--uploaders", default=2, show_default=True, help="Concurrent uploader processes."),
        click.option("--projects", default=1_000, show_default=True, help="Projects the uploads go to."),
        click.option("--workers", default=2, show_default=True, help="Celery worker processes (distributed mode)."),
        click.option("--level", type=click.Choice(["extension", "host", "commit"]), default="extension",
                     show_default=True, help="Uploads as the extension records them, whole host uploads (File "
                     "rows, hooks), or one host row committed with no extension (the machine's ceiling)."),
    )):
        func = option(func)
    return func


@bench.command()
@_common
@_uploads
@click.option("--uploads", default=10_000, show_default=True)
def burst(mode: str, bins: int, as_json: bool, published: int, uploaders: int, projects: int, workers: int,
          level: str, uploads: int) -> None:
    """--uploads uploads as fast as --uploaders can commit them: time until all are published."""
    with bench_host(mode, bins, workers) as host:
        host.start_workers()
        _prepare_uploads(host, published, projects)
        committed, watcher, wall, messages = _upload_run(host, level, published, uploads, uploaders, projects, rate=0)
        upload_s = max(t for _, t in committed) - min(t for _, t in committed)
        last = max(t for _, t in committed)
        drain_s = next(started for started, pending in watcher.polls if started > last and not pending) - last
        # Nothing new is published at --level commit: the targets published before are checked.
        verified = verify(host, sample(published, 20) if level == "commit" else sample(uploads, 20, published),
                          projects)
        report({
            "scenario": "burst", "mode": mode, "bins": bins, "published": published, "uploads": uploads,
            "uploaders": uploaders, "workers": workers if mode == "distributed" else 0, "level": level,
            "upload_s": round(upload_s, 2), "drain_s": round(drain_s, 2), "wall_s": round(wall, 2),
            "targets_per_s": round(uploads / wall, 1),
            "messages_per_1000_uploads": round(1000 * messages / uploads, 1), "ngclient_verified": verified,
        }, as_json)


@bench.command()
@_common
@_uploads
@click.option("--rate", default=50.0, show_default=True, help="Uploads per second, shared by the uploaders.")
@click.option("--seconds", default=60, show_default=True)
def steady(mode: str, bins: int, as_json: bool, published: int, uploaders: int, projects: int, workers: int,
           level: str, rate: float, seconds: int) -> None:
    """Uploads at --rate per second: latency from each commit to its publication."""
    with bench_host(mode, bins, workers) as host:
        host.start_workers()
        _prepare_uploads(host, published, projects)
        count = int(rate * seconds)
        committed, watcher, _, messages = _upload_run(host, level, published, count, uploaders, projects, rate)
        latencies = [watcher.published_at(path, at) - at for path, at in committed]
        verified = verify(host, sample(count, 20, published), projects)
        report({
            "scenario": "steady", "mode": mode, "level": level, "bins": bins, "published": published, "rate": rate,
            "uploads": count, "workers": workers if mode == "distributed" else 0,
            "p50_s": round(statistics.median(latencies), 3), "p99_s": round(percentile(latencies, 0.99), 3),
            "max_s": round(max(latencies), 3),
            "messages_per_1000_uploads": round(1000 * messages / count, 1), "ngclient_verified": verified,
        }, as_json)


@bench.command()
@_common
@click.option("--uploads", default=1_000, show_default=True, help="Uploads per block.")
@click.option("--rounds", default=3, show_default=True, help="Blocks with the extension, and as many without.")
@click.option("--projects", default=100, show_default=True)
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (distributed mode).")
def throughput(mode: str, bins: int, as_json: bool, uploads: int, rounds: int, projects: int, workers: int) -> None:
    """Host uploads as fast as one uploader commits them, with the extension and without: the ratio.

    Blocks of --uploads alternate between the host with the extension's hooks
    (publishing meanwhile: on the host's task thread when embedded, on the
    workers when distributed), the same hooks with no publish message sent
    until the block ends (what the hooks alone cost), and the same host
    without them (``tuf.enabled = false``, same database); each block starts
    once everything before it is published. Also counts the publish messages
    the hooked uploads sent.
    """
    from dev.app import configure

    with bench_host(mode, bins, workers) as host:
        seed_host(host.engine, 0, projects)
        host.start_workers()
        plain = configure({"tuf.enabled": "false"})
        hooked = host.config.registry["sqlalchemy.sessionmaker"]
        blocks = {"with": hooked, "hooks_only": hooked, "without": plain.registry["sqlalchemy.sessionmaker"]}
        task = host.config.registry["tuf.publish_task"]
        send = task.delay
        messages = count_messages(host.config)
        counted = task.delay
        rates: dict[str, list[float]] = {label: [] for label in blocks}
        i = 0
        for _ in range(rounds):
            for label, sessions in blocks.items():
                if label == "hooks_only":
                    task.delay = lambda *args, **kwargs: None  # the publisher waits for the block's end
                started = time.perf_counter()
                for _ in range(uploads):
                    with host_session(sessions, host.engine) as session:
                        upload(session, i, projects)
                    i += 1
                rates[label].append(uploads / (time.perf_counter() - started))
                if label == "hooks_only":
                    task.delay = counted
                    send()
                _wait_published(host)
        plain.registry["sqlalchemy.engine"].dispose()
        verified = verify(host, [3 * uploads * r + n for r in range(rounds) for n in sample(uploads, 3)], projects)
        medians = {label: statistics.median(values) for label, values in rates.items()}
        report({
            "scenario": "throughput", "mode": mode, "bins": bins, "uploads": uploads * rounds,
            "uploads_per_s_with": round(medians["with"], 1),
            "uploads_per_s_hooks_only": round(medians["hooks_only"], 1),
            "uploads_per_s_without": round(medians["without"], 1),
            "ratio": round(medians["with"] / medians["without"], 3),
            "ratio_hooks_only": round(medians["hooks_only"] / medians["without"], 3),
            "messages_per_1000_uploads": round(1000 * messages[0] / (uploads * rounds), 1),
            "ngclient_verified": verified,
        }, as_json)


def _wait_published(host: BenchHost) -> None:
    """Until nothing is pending (and, embedded, the host's task thread is idle)."""
    if host.mode == "embedded":
        from dev.tasks import wait_for_embedded_tasks

        wait_for_embedded_tasks(host.config.registry["celery.app"], timeout=600)
    deadline = time.time() + 600
    while host.pending():
        if time.time() > deadline:
            raise click.ClickException("uploads were still pending after 10 minutes")
        time.sleep(0.05)


@bench.command()
@_common
@click.option("--uploads", default=2_000, show_default=True, help="Uploads with the extension, and as many without.")
@click.option("--projects", default=100, show_default=True)
@click.option("--workers", default=2, show_default=True, help="Celery worker processes (distributed mode).")
def overhead(mode: str, bins: int, as_json: bool, uploads: int, projects: int, workers: int) -> None:
    """Time the extension adds to the host's upload transaction: p50, p99.

    Timed directly, per upload: the hooks (recording removals before the
    flush and additions after it, queueing the publish task after commit) and the statements
    inserting the pending changes. As a check, uploads alternate between the
    host with the hooks and the same host without them (``tuf.enabled =
    false``, same database) and both upload times are reported.
    """
    from sqlalchemy import event

    from dev.app import configure

    with bench_host(mode, bins, workers) as host:
        seed_host(host.engine, 0, projects)
        host.start_workers()
        plain = configure({"tuf.enabled": "false"})
        hooked_sessions = host.config.registry["sqlalchemy.sessionmaker"]
        plain_sessions = plain.registry["sqlalchemy.sessionmaker"]
        uploader = threading.get_ident()  # embedded publishes run on another thread: not counted
        hook_time = [0.0]
        marks: dict[str, float] = {}
        parts: dict[str, list[float]] = {}

        def start(name: str) -> None:
            if threading.get_ident() == uploader:
                marks[name] = time.perf_counter()

        def stop(name: str) -> None:
            if threading.get_ident() == uploader and name in marks:
                spent = time.perf_counter() - marks.pop(name)
                hook_time[0] += spent
                parts.setdefault(name, []).append(spent * 1000)

        for name in ("before_flush", "after_flush", "after_commit"):
            event.listen(hooked_sessions, name, lambda *a, n=name: start(n), insert=True)
            event.listen(hooked_sessions, name, lambda *a, n=name: stop(n))
        event.listen(host.engine, "before_cursor_execute",
                     lambda conn, cursor, sql, *a: start("sql") if "tuf_pending_changes" in sql else None)
        event.listen(host.engine, "after_cursor_execute",
                     lambda conn, cursor, sql, *a: stop("sql") if "tuf_pending_changes" in sql else None)
        timings: dict[str, list[float]] = {"on": [], "off": [], "hook": []}
        i = 0
        for _ in range(uploads):
            for label, sessions in (("on", hooked_sessions), ("off", plain_sessions)):
                hook_time[0] = 0.0
                started = time.perf_counter()
                with host_session(sessions, host.engine) as session:
                    upload(session, i, projects)
                timings[label].append(time.perf_counter() - started)
                if label == "on":
                    timings["hook"].append(hook_time[0])
                i += 1
        if mode == "embedded":
            from dev.tasks import wait_for_embedded_tasks

            wait_for_embedded_tasks(host.config.registry["celery.app"], timeout=600)
        else:
            while host.pending():
                time.sleep(0.1)
        plain.registry["sqlalchemy.engine"].dispose()
        verified = verify(host, [2 * n for n in sample(uploads, 10)], projects)  # the hooked ones
        ms = {label: [t * 1000 for t in values] for label, values in timings.items()}
        click.echo(" ".join(f"{k} p50 {statistics.median(v):.3f} p99 {percentile(v, 0.99):.3f} ms"
                            for k, v in parts.items()))
        report({
            "scenario": "overhead", "mode": mode, "bins": bins, "uploads": uploads,
            "overhead_p50_ms": round(statistics.median(ms["hook"]), 3),
            "overhead_p99_ms": round(percentile(ms["hook"], 0.99), 3),
            "upload_p50_ms": round(statistics.median(ms["on"]), 3),
            "upload_p99_ms": round(percentile(ms["on"], 0.99), 3),
            "upload_without_tuf_p50_ms": round(statistics.median(ms["off"]), 3),
            "upload_without_tuf_p99_ms": round(percentile(ms["off"], 0.99), 3),
            "ngclient_verified": verified,
        }, as_json)
