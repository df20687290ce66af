"""Short versions of the reliability scenarios of ``python -m dev soak`` (full sizes: docs/reliability.md).

Each runs the real harness (real SIGKILLs, real databases, real clients) with
a small size and requires zero failures and zero discrepancies.
"""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from dev.cli import dev
from dev.soak.concurrency import run_concurrency
from dev.soak.crash import run_crash
from dev.soak.harness import database_state, published_targets, record_file, sandbox
from dev.soak.outage import run_database_outage, run_storage_outage
from dev.soak.restore import run_restore
from warehouse_tuf.services import RepositoryError
from warehouse_tuf.storage import LocalStorage

pytestmark = pytest.mark.soak


def assert_clean(report, *, checks: int) -> None:
    assert report.problems == []
    assert (report.failures, report.discrepancies) == (0, 0)
    assert report.checks >= checks


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_crash_at_random_points_of_publish_refresh_backfill_and_rotation(database):
    report = run_crash(4, database=database, seed=7)
    assert_clean(report, checks=4 * 7)
    assert sum(report.details["kills"].values()) >= 1  # the seed makes at least one real kill


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_restore_from_an_older_backup_is_refused_then_recovered(database):
    # The second trial rotates the online key after its backup: the refusal must
    # still name the restore, not the signer configured for the newer root.
    assert_clean(run_restore(2, database=database, seed=3), checks=12)


def test_soak_command_ends_with_one_json_line():
    result = CliRunner().invoke(dev, ["soak", "outage", "--part", "storage", "--trials", "2", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["trials"] == 2
    assert (figures["failures"], figures["discrepancies"]) == (0, 0)


def test_storage_full_or_read_only_fails_cleanly_then_publishes():
    report = run_storage_outage(4, seed=2)
    assert_clean(report, checks=4 * 5)
    assert sum(report.details["failed_publishes"].values()) >= 2  # outages that really failed a publish


@pytest.mark.postgres
def test_database_connections_dropped_mid_publish_are_retried():
    report = run_database_outage(6, seed=4)
    assert_clean(report, checks=6 * 5)
    assert sum(report.details["backends_terminated"].values()) >= 1


@pytest.mark.postgres
def test_concurrent_uploads_and_deletes_through_a_broker_outage():
    report = run_concurrency(120, uploaders=4, workers=2, bins=16, seed=5, outage=4)
    assert_clean(report, checks=10)
    assert report.details["requests"]["uploads"] == 120
    assert report.details["pending_when_broker_returned"] > 0
    assert report.details["polls"] >= 10 and report.details["files"] > 0


def test_recover_refuses_what_it_cannot_resume_from_and_rebuilds_a_lost_timestamp():
    with sandbox("sqlite") as box:
        engine = create_engine(box.url)
        with Session(engine) as session:
            manager = box.manager(session)
            (box.metadata / "2.root.json").write_bytes(b"{}")  # a newer root the database lacks
            with pytest.raises(RepositoryError, match="storage holds root version 2 but the database has 1"):
                manager.recover()
            assert database_state(session)["unfinished"] == []  # refused: nothing marked
            (box.metadata / "2.root.json").unlink()
            # A lost timestamp.json is not refused: storage lost it, recover re-publishes it.
            before = json.loads((box.metadata / "timestamp.json").read_bytes())["signed"]["version"]
            (box.metadata / "timestamp.json").unlink()
            result = manager.recover()
            assert result.timestamp_version is None and result.publish is not None
            after = json.loads((box.metadata / "timestamp.json").read_bytes())["signed"]["version"]
            assert after > before and database_state(session)["unfinished"] == []
        engine.dispose()


@pytest.mark.postgres
def test_a_publisher_that_lost_its_lock_and_was_overtaken_writes_no_older_timestamp():
    """Found by the database outage harness: A's lock connection dies, B publishes, then A goes on."""
    with sandbox("postgresql") as box:
        engine = create_engine(box.url, pool_pre_ping=True)
        admin = create_engine(box.url, isolation_level="AUTOCOMMIT")
        overtaken = []

        def publish_b() -> None:
            with Session(engine) as session:
                manager = box.manager(session)
                record_file(manager, box.packages, "b.whl")
                session.commit()
                overtaken.append(manager.publish().timestamp_version)

        class Stalling(LocalStorage):
            """While A writes its snapshot, its lock connection dies and B publishes in full."""

            def put_many(self, files):
                if not overtaken and any(name.endswith(".snapshot.json") for name in files):
                    with admin.connect() as conn:
                        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks "
                                          "WHERE locktype = 'advisory' AND granted AND database = "
                                          "(SELECT oid FROM pg_database WHERE datname = current_database())"))
                    b = threading.Thread(target=publish_b)
                    b.start()
                    b.join(60)
                super().put_many(files)

        with Session(engine) as session:
            manager = box.manager(session, Stalling(box.metadata))
            path_a, _ = record_file(manager, box.packages, "a.whl")
            session.commit()
            with pytest.raises(RepositoryError, match="its publish lock was lost"):
                manager.publish()
            state = database_state(session)
        timestamp = json.loads((box.metadata / "timestamp.json").read_bytes())["signed"]["version"]
        assert overtaken and timestamp == overtaken[0]  # B's, not an older one written over it
        assert state["pending"] == 0 and path_a in published_targets(box.metadata)  # B published A's too
        box.client().refresh()
        engine.dispose()
        admin.dispose()
