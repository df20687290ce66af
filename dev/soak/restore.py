"""Restore: the database goes back to an older backup while storage keeps the newer metadata.

Each trial publishes, takes a backup (pg_dump, or SQLite's backup API: a
consistent copy of the file), publishes more, restores the backup and records
one more upload. Then, through the documented commands:

- ``tuf publish`` must refuse with a clear message and leave storage untouched;
- every other trial the online key was rotated after the backup: ``tuf recover``
  must then refuse until ``tuf install`` of the same payload puts the newer
  root and targets back (docs/recovery.md);
- ``tuf recover`` resumes from the published versions;
- after re-uploading some of what the backup lost, ``tuf publish`` succeeds and a
  client that trusted the newest (pre-restore) timestamp updates to it: versions
  moved strictly forward, none names two contents, published = database.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import subprocess
import time

import click
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from dev.soak import json_option, soak
from dev.soak.harness import (
    Report,
    Sandbox,
    VersionLog,
    compare_targets,
    database_state,
    prepare_rotation,
    published_targets,
    record_file,
    sandbox,
)
from dev.testing.devhost import dev_command
from warehouse_tuf import ceremony


def run_restore(trials: int, *, database: str = "sqlite", bins: int = 16,
                seed: int | None = None) -> Report:
    rng = random.Random(seed)
    report = Report("restore", trials=trials, details={"database": database, "bins": bins})
    started = time.monotonic()
    with sandbox(database, bins) as box:
        engine = create_engine(box.url)
        versions = VersionLog()
        client = box.client()
        client.refresh()
        expected: dict[str, tuple[int, str]] = {}
        backup = box.directory / "backup"
        for trial in range(trials):
            _publish_rounds(box, engine, expected, f"t{trial}-before", rng)
            _backup(box, engine, backup)
            saved = dict(expected)
            # Every other trial, the online key is rotated after the backup: the
            # restored database then trusts a root older than the one published.
            rotation = _rotate(box, engine, f"rotation-{trial}") if trial % 2 else None
            lost = _publish_rounds(box, engine, expected, f"t{trial}-after", rng, refresh=True)
            client.refresh()
            versions.observe(box.metadata, report)
            _restore(box, engine, backup)
            expected = saved
            with Session(engine) as session:
                path, info = record_file(box.manager(session), box.packages, f"t{trial}-waiting.whl")
                session.commit()
            expected[path] = info

            before = _storage_digest(box)
            refused = dev_command("tuf", "publish", env=box.host_env)
            report.checks += 1
            if refused.returncode != 1 or "older backup" not in refused.stderr \
                    or "tuf recover" not in refused.stderr:
                report.discrepancy(f"trial {trial}: publish after the restore was not refused clearly "
                                   f"(exit {refused.returncode}): {refused.stderr.strip()[-300:]}")
            if _storage_digest(box) != before:
                report.discrepancy(f"trial {trial}: the refused publish changed storage")

            if rotation is not None:
                refused = dev_command("tuf", "recover", env=box.host_env)
                report.checks += 1
                if refused.returncode != 1 or "storage holds root version" not in refused.stderr:
                    report.discrepancy(f"trial {trial}: recover with the rotated root missing was not "
                                       f"refused clearly: {refused.stderr.strip()[-300:]}")
                reinstalled = dev_command("tuf", "install", rotation["payload"], env=box.host_env)
                if reinstalled.returncode != 0:
                    report.failure(f"trial {trial}: re-installing the rotation exited "
                                   f"{reinstalled.returncode}: {reinstalled.stderr.strip()[-300:]}")
                    continue
            recovered = dev_command("tuf", "recover", env=box.host_env)
            if recovered.returncode != 0:
                report.failure(f"trial {trial}: tuf recover exited {recovered.returncode}: "
                               f"{recovered.stderr.strip()[-300:]}")
                continue
            with Session(engine) as session:
                manager = box.manager(session)
                for name in rng.sample(lost, k=len(lost) // 2):  # some uploaders upload again
                    path, info = record_file(manager, box.packages, name)
                    expected[path] = info
                session.commit()
            published = dev_command("tuf", "publish", env=box.host_env)
            if published.returncode != 0:
                report.failure(f"trial {trial}: publish after recover exited {published.returncode}: "
                               f"{published.stderr.strip()[-300:]}")
                continue
            versions.observe(box.metadata, report)
            report.checks += 1
            try:
                client.refresh()
            except Exception as exc:
                report.discrepancy(f"trial {trial}: a client that trusted the newest timestamp "
                                   f"could not update: {type(exc).__name__}: {exc}")
            with Session(engine) as session:
                state = database_state(session)
            compare_targets(expected, state["targets"], report, f"trial {trial}: database")
            compare_targets(expected, published_targets(box.metadata), report, f"trial {trial}: published")
        engine.dispose()
    report.details.update(targets=len(expected), timestamp=versions.last_timestamp)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _publish_rounds(box: Sandbox, engine: Engine, expected: dict, label: str,
                    rng: random.Random, refresh: bool = False) -> list[str]:
    """One to three publishes of a few uploads each; returns the uploaded names.

    With ``refresh``, every online role is first re-signed, so that each has
    versions the backup does not know.
    """
    names = []
    with Session(engine) as session:
        manager = box.manager(session)
        if refresh:
            manager.refresh(window=max(manager.settings.expiry.values()) * 2)
        for round_ in range(rng.randint(1, 3)):
            for i in range(rng.randint(1, 3)):
                name = f"{label}-{round_}-{i}.whl"
                path, info = record_file(manager, box.packages, name)
                expected[path] = info
                names.append(name)
            session.commit()
            manager.publish()
    return names


def _rotate(box: Sandbox, engine: Engine, name: str) -> dict:
    """Install a next root and targets trusting a new online key, and configure its signer."""
    with Session(engine) as session:
        rotation = prepare_rotation(session, box, name)
        payload = ceremony.Payload.from_file(rotation["payload"])
        both = tuple(f"{keyid}=file2:{box.keyring[keyid]}" for keyid in rotation["rotating"])
        box.manager(session).install(payload.role_bytes("root"), payload.role_bytes("targets"), both)
    new = rotation["rotating"][-1]
    box.online_signers = f"{new}=file2:{box.keyring[new]}"
    return rotation


def _backup(box: Sandbox, engine: Engine, backup) -> None:
    engine.dispose()
    url = make_url(box.url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        return
    subprocess.run(["pg_dump", "-Fc", "-h", url.host, "-U", url.username, "-d", url.database,
                    "-f", str(backup)], check=True, capture_output=True)


def _restore(box: Sandbox, engine: Engine, backup) -> None:
    engine.dispose()
    url = make_url(box.url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(backup) as source, sqlite3.connect(url.database) as target:
            source.backup(target)
        return
    subprocess.run(["pg_restore", "--clean", "--if-exists", "-h", url.host, "-U", url.username,
                    "-d", url.database, str(backup)], check=True, capture_output=True)


def _storage_digest(box: Sandbox) -> str:
    digest = hashlib.sha256()
    for path in sorted(box.metadata.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@soak.command()
@click.option("--trials", default=20, show_default=True, help="Backup/restore/recover cycles.")
@click.option("--database", type=click.Choice(["sqlite", "postgresql"]), default="sqlite", show_default=True)
@click.option("--bins", default=16, show_default=True)
@click.option("--seed", type=int)
@json_option
def restore(trials: int, database: str, bins: int, seed: int | None, as_json: bool) -> None:
    """Restore the database from an older backup: publish refuses, 'tuf recover' resumes."""
    run_restore(trials, database=database, bins=bins, seed=seed).emit(as_json)
