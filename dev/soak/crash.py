"""Crash safety: SIGKILL publish, refresh, backfill or online key rotation at random points.

Each trial commits a few changes (additions, sometimes a removal), rolls one
back, then runs an operation in a child process (dev/soak/killable.py) that
first uploads one more file in its own transaction and then kills itself at a
random kill point. Operations take turns: publish; refresh of every online
role; backfill of files added to the host's tables behind the extension's
back; install of a next root and targets that trust a new online key (the
dual-signed handover). The restarted operation runs the same way, uninterrupted
(a rotation that was installed before the kill is finished by a publish).
The parent then checks, like a user would:

- a client that trusted the last timestamp before the crash updates without
  error, and every bin the published snapshot names is there;
- after restarting the operation: every committed change is published, nothing
  rolled back or killed before its commit is, and the database agrees;
- no version number ever names two different contents.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter

import click
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dev.models import File, Project, Release
from dev.soak import json_option, soak
from dev.soak.harness import (
    CRASH_OPERATIONS,
    Report,
    Sandbox,
    VersionLog,
    compare_targets,
    database_state,
    prepare_rotation,
    published_targets,
    record_file,
    sandbox,
    store_file,
)
from dev.testing.tufclient import Client
from warehouse_tuf.models import PendingChange, Target


def run_crash(trials: int, *, database: str = "sqlite", bins: int = 16, seed: int | None = None,
              operations: tuple[str, ...] = CRASH_OPERATIONS) -> Report:
    rng = random.Random(seed)
    report = Report("crash", trials=trials, details={"database": database, "bins": bins})
    started = time.monotonic()
    with sandbox(database, bins) as box:
        engine = create_engine(box.url)
        session = Session(engine)
        manager = box.manager(session)
        versions = VersionLog()
        versions.observe(box.metadata, report)
        client = box.client()
        client.refresh()
        expected: dict[str, tuple[int, str]] = {}
        never: set[str] = set()
        # Kill points an uninterrupted run passes, per operation: learnt from the
        # runs that were not killed (restarts included), so kills spread over all of it.
        points = dict.fromkeys(operations, 40)
        kills: Counter[str] = Counter()
        host_files: set[str] = set()  # in the host's tables: backfill would sign them again
        for trial in range(trials):
            op = operations[trial % len(operations)]
            for i in range(rng.randint(1, 4)):
                path, info = record_file(manager, box.packages, f"t{trial}-{i}.whl")
                expected[path] = info
            removable = sorted(expected.keys() - host_files)
            if len(removable) > 4 and rng.random() < 0.3:
                removed = rng.choice(removable)
                manager.record_removal(removed)
                del expected[removed]
            session.commit()
            extra = {}
            if op == "backfill":
                added = _add_host_files(session, box, trial, rng.randint(2, 8))
                expected.update(added)
                host_files.update(added)
            elif op == "rotate":
                extra = prepare_rotation(session, box, f"rotation-{trial}")
            path, _ = record_file(manager, box.packages, f"t{trial}-rolled-back.whl")
            never.add(path)
            session.rollback()

            upload = f"t{trial}-child.whl"
            crashed = box.run_child([op, "--kill-at", str(rng.randint(1, points[op])), "--upload", upload],
                                    extra)
            if crashed.returncode == -signal.SIGKILL:
                kills[op] += 1
            elif crashed.returncode == 0:
                points[op] = max(points[op], json.loads(crashed.stdout)["points"])
            else:
                report.failure(f"trial {trial}: {op} exited {crashed.returncode}: {crashed.stderr[-300:]}")
            versions.observe(box.metadata, report)
            _check_readers(box.metadata, client, never, report, f"trial {trial} after the crash")

            recovered = box.run_child([op], extra)
            if recovered.returncode != 0:
                report.failure(f"trial {trial}: restarted {op} exited {recovered.returncode}: "
                               f"{recovered.stderr[-300:]}")
                continue
            points[op] = max(points[op], json.loads(recovered.stdout)["points"])
            versions.observe(box.metadata, report)
            _check_readers(box.metadata, client, never, report, f"trial {trial} after recovery")
            upload_path, upload_info = store_file(box.packages, upload)
            state = database_state(session)
            if upload_path in state["targets"]:
                expected[upload_path] = upload_info
            else:
                never.add(upload_path)
            report.checks += 1
            if state["pending"] or state["unfinished"]:
                report.discrepancy(f"trial {trial}: after recovery {state['pending']} change(s) "
                                   f"pending, {len(state['unfinished'])} role(s) unfinished")
            compare_targets(expected, state["targets"], report, f"trial {trial}: database")
            try:
                compare_targets(expected, published_targets(box.metadata), report, f"trial {trial}: published")
            except FileNotFoundError as exc:
                report.discrepancy(f"trial {trial}: published metadata incomplete: {exc}")
            newest = [p for p in expected if p.endswith(f"/t{trial}-0.whl")]
            report.checks += 1
            try:
                downloaded = client.download(newest[0]) if newest else None
            except Exception as exc:
                downloaded = exc
            if newest and downloaded != f"soak file t{trial}-0.whl".encode():
                report.discrepancy(f"trial {trial}: the client could not download {newest[0]}: {downloaded!r}")
        _check_never_recorded(session, never, report)
        session.close()
        engine.dispose()
    report.details.update(kills=dict(kills), kill_points=points,
                          targets=len(expected), timestamp=versions.last_timestamp)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _add_host_files(session: Session, box: Sandbox, trial: int, count: int) -> dict[str, tuple[int, str]]:
    """Files the host has but never recorded (as before the extension was enabled)."""
    project = Project(name=f"host-{trial}")  # normalized_name: the database's
    release = Release(project=project, version="1.0")
    added = {}
    for i in range(count):
        path, (length, sha256) = store_file(box.packages, f"host_{trial}-1.0-{i}-py3-none-any.whl")
        digest = path.replace("/", "")[:64]
        session.add(File(release=release, filename=path.rsplit("/", 1)[1], path=path, size=length,
                         packagetype="bdist_wheel", python_version="py3", md5_digest=sha256[:32],
                         sha256_digest=sha256, blake2_256_digest=digest))
        added[path] = (length, sha256)
    session.commit()
    return added


def _check_readers(metadata, client: Client, never: set[str], report: Report, label: str) -> None:
    """A client updates, every bin of the published snapshot is there, nothing uncommitted is listed."""
    report.checks += 1
    try:
        client.refresh()
        listed = published_targets(metadata)
    except Exception as exc:
        report.discrepancy(f"{label}: a client could not update: {type(exc).__name__}: {exc}")
        return
    leaked = never & listed.keys()
    if leaked:
        report.discrepancy(f"{label}: {len(leaked)} uncommitted target(s) published, e.g. {min(leaked)}")


def _check_never_recorded(session: Session, never: set[str], report: Report) -> None:
    report.checks += 1
    paths = sorted(never)
    for start in range(0, len(paths), 500):
        chunk = paths[start:start + 500]
        found = (session.scalar(select(Target.path).where(Target.path.in_(chunk)).limit(1))
                 or session.scalar(select(PendingChange.path).where(PendingChange.path.in_(chunk)).limit(1)))
        if found:
            report.discrepancy(f"uncommitted target {found} is in the database")


@soak.command()
@click.option("--trials", default=200, show_default=True, help="Crash trials (operations alternate).")
@click.option("--database", type=click.Choice(["sqlite", "postgresql"]), default="sqlite", show_default=True)
@click.option("--bins", default=16, show_default=True)
@click.option("--seed", type=int, help="Random seed, to replay a run.")
@json_option
def crash(trials: int, database: str, bins: int, seed: int | None, as_json: bool) -> None:
    """SIGKILL publish/refresh/backfill/rotation at random points; check clients, targets, versions."""
    run_crash(trials, database=database, bins=bins, seed=seed).emit(as_json)
