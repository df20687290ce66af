"""What one publish costs, asserted by mechanism (rows read, commits), not by time.

A publish of one change must not grow with the repository: it reads the
touched bins' rows and a bounded number of others, commits twice, and the
snapshot it writes is byte for byte the one a build from every row would
write, whatever came before (a property test).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from securesystemslib.formats import encode_canonical
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session
from tuf.api.metadata import MetaFile, Snapshot

from dev.testing.tufclient import Client
from tests.conftest import make_settings
from tests.test_services import publish_file, snapshot_of
from warehouse_tuf import targets as targetlib
from warehouse_tuf.migrations import upgrade
from warehouse_tuf.models import RoleVersion, Target
from warehouse_tuf.services import TUFManager
from warehouse_tuf.snapshot import CACHE
from warehouse_tuf.storage import LocalStorage

_TABLE = re.compile(r"\bFROM (tuf_\w+)", re.IGNORECASE)


class Reads:
    """Rows each table gave to SELECTs, and commits of write transactions, on an engine.

    SQLAlchemy has no event for fetched rows: each SELECT is run again on its own
    DBAPI connection (same transaction, same parameters) right after it, and counted.
    """

    def __init__(self, engine) -> None:
        self.rows: dict[str, int] = {}
        self.statements = 0
        self.write_commits = 0
        self._writing: set[int] = set()
        event.listen(engine, "after_cursor_execute", self._executed)
        event.listen(engine, "commit", self._committed)

    def _executed(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements += 1
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self._writing.add(id(conn.connection.dbapi_connection))
        elif verb == "SELECT" and not executemany:
            table = _TABLE.search(statement)
            if table:
                again = conn.connection.dbapi_connection.cursor()
                again.execute(statement, parameters)
                self.rows[table.group(1)] = self.rows.get(table.group(1), 0) + len(again.fetchall())
                again.close()

    def _committed(self, conn) -> None:
        key = id(conn.connection.dbapi_connection)
        if key in self._writing:
            self._writing.discard(key)
            self.write_commits += 1


def _manager(engine, tmp_path: Path, **overrides) -> TUFManager:
    settings = make_settings(tmp_path, **{"tuf.bin_count": 256, **overrides})
    return TUFManager(Session(engine), settings, LocalStorage(tmp_path / "metadata"),
                      LocalStorage(tmp_path / "simple"))


def test_a_publish_of_one_change_reads_its_bin_and_a_bounded_number_of_other_rows(engine, tmp_path):
    repo = _manager(engine, tmp_path)
    repo.bootstrap_development()
    targets_dir = tmp_path / "targets"
    paths = [publish_file(repo, targets_dir, f"seed-{n}.whl", f"seed {n}".encode()) for n in range(300)]
    repo.db.commit()
    repo.publish()  # many bins; this process now holds the snapshot it built
    path = publish_file(repo, targets_dir, "one-1.0.whl", b"one upload")
    repo.db.commit()
    touched = targetlib.bin_index(path, 8)
    with Session(engine) as s:
        in_bin = len(s.scalars(select(Target.path).where(Target.bin_index == touched)).all()) + 1

    reads = Reads(engine)
    result = repo.publish()

    assert result.bins == [repo.bin_layout().name(touched)]
    # Roles: the top-level ones (read a few times), the touched bin, the timestamp's
    # reservation and the health gauges; never the 256 bins.
    assert reads.rows.get("tuf_roles", 0) <= 20, reads.rows
    assert reads.rows.get("tuf_targets", 0) <= in_bin, reads.rows
    assert reads.rows.get("tuf_pending_changes", 0) <= 3, reads.rows
    assert reads.statements <= 40
    assert reads.write_commits == 2  # the reservation with the applied changes, and the result
    client = Client(tmp_path / "metadata", targets_dir)
    assert client.download(path) == b"one upload"
    assert client.download(paths[0]) == b"seed 0"


def test_a_process_that_did_not_build_the_current_snapshot_rebuilds_it_from_every_row(engine, tmp_path):
    repo = _manager(engine, tmp_path)
    repo.bootstrap_development()
    targets_dir = tmp_path / "targets"
    path = publish_file(repo, targets_dir, "a-1.0.whl", b"a")
    repo.db.commit()
    repo.publish()
    CACHE.take(repo.repository.name, -1, "")  # as in a process that never published here
    other = publish_file(repo, targets_dir, "b-1.0.whl", b"b")
    repo.db.commit()

    reads = Reads(engine)
    repo.publish()

    assert reads.rows["tuf_roles"] >= 256
    client = Client(tmp_path / "metadata", targets_dir)
    assert client.download(path) == b"a"
    assert client.download(other) == b"b"


def _from_scratch(engine, snapshot: Snapshot) -> bytes:
    """The canonical ``signed`` of ``snapshot`` rebuilt from every role row, by securesystemslib."""
    with Session(engine) as s:
        rows = s.execute(select(RoleVersion.name, RoleVersion.version, RoleVersion.bin_index)).all()
    meta = {f"{name}.json": MetaFile(version) for name, version, index in rows
            if index is not None or name == "targets"}
    rebuilt = Snapshot(version=snapshot.version, expires=snapshot.expires, meta=meta)
    return encode_canonical(rebuilt.to_dict()).encode()


class _FailingStorage(LocalStorage):
    """Storage that refuses the next snapshot write once armed (a publish dying midway)."""

    armed = False

    def put_many(self, files):
        if self.armed and any(name.endswith(".snapshot.json") for name in files):
            self.armed = False
            raise OSError("storage refused the snapshot")
        super().put_many(files)


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.integers(1, 6)),
        st.tuples(st.just("remove"), st.integers(0, 40), st.just(1)),
        st.tuples(st.just("crash"), st.integers(0, 40), st.just(1)),
        st.tuples(st.just("forget"), st.just(0), st.just(0)),
        st.tuples(st.just("refresh"), st.just(0), st.just(0)),
    ),
    min_size=1, max_size=8,
)


@pytest.mark.slow
@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_snapshot_bytes_equal_a_build_from_every_row_after_any_publishes(steps, tmp_path_factory):
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    engine = create_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    upgrade(engine)
    try:
        settings = make_settings(tmp_path, **{"tuf.bin_count": 16})
        storage = _FailingStorage(tmp_path / "metadata")
        repo = TUFManager(Session(engine), settings, storage, LocalStorage(tmp_path / "simple"))
        repo.bootstrap_development()
        targets_dir = tmp_path / "targets"
        published: dict[str, bytes] = {}
        for step, (kind, seed, count) in enumerate(steps):
            if kind == "forget":
                CACHE.take(repo.repository.name, -1, "")
                continue
            if kind == "refresh":
                repo.refresh(window=settings.expiry["bins"] * 2)
            else:
                for n in range(count):
                    data = f"file {step} {seed} {n}".encode()
                    path = publish_file(repo, targets_dir, f"p{step}-{seed}-{n}.whl", data)
                    if kind == "remove":
                        repo.db.commit()
                        repo.publish()
                        repo.record_removal(path)
                    else:
                        published[path] = data
                repo.db.commit()
                storage.armed = kind == "crash"
                try:
                    repo.publish()
                except OSError:
                    repo.publish()  # the next run finishes what the failed one left
            snapshot = snapshot_of(tmp_path / "metadata")
            payload = encode_canonical(snapshot.signed.to_dict()).encode()
            assert payload == _from_scratch(engine, snapshot.signed)
            stored = (tmp_path / "metadata" / f"{snapshot.signed.version}.snapshot.json").read_bytes()
            assert hashlib.sha256(stored).hexdigest() == Session(engine).get(RoleVersion, "snapshot").sha256
        client = Client(tmp_path / "metadata", targets_dir)
        for path, data in list(published.items())[:3]:
            assert client.download(path) == data
    finally:
        engine.dispose()


def test_a_snapshot_entry_that_is_not_a_name_and_an_integer_is_refused():
    from warehouse_tuf.snapshot import SnapshotMeta, SnapshotMetaError

    with pytest.raises(SnapshotMetaError, match="is not an integer"):
        SnapshotMeta({"bins-0.json": "3"})
    meta = SnapshotMeta({"bins-0.json": 1, "odd \u00e9\".json": 2})
    signed = Snapshot(version=1).to_dict()
    signed["meta"] = {}
    assert meta.encode(signed) == encode_canonical(
        Snapshot(version=1, meta={"bins-0.json": MetaFile(1), "odd \u00e9\".json": MetaFile(2)}).to_dict()
    ).encode()


def test_a_publish_past_its_deadline_leaves_its_changes_and_the_request_standing(engine, tmp_path):
    """The publish task stops starting runs at its deadline and queues its successor, for which
    the request stands; the successor publishes and withdraws it."""
    import datetime
    import time

    from warehouse_tuf import publish_requests

    stale = datetime.timedelta(minutes=1)
    repo = _manager(engine, tmp_path)
    repo.bootstrap_development()
    targets_dir = tmp_path / "targets"
    path = publish_file(repo, targets_dir, "late-1.0.whl", b"late")
    repo.db.commit()
    assert publish_requests.request(engine, stale)  # the commit's message

    stopped = repo.publish(wait=False, deadline=time.monotonic())
    assert stopped.pending_left and not stopped.published
    assert not publish_requests.request(engine, stale)  # still standing: no second message

    successor = repo.publish(wait=False)
    assert successor.published and not successor.pending_left
    assert publish_requests.request(engine, stale)  # withdrawn: the next commit sends one
    assert Client(tmp_path / "metadata", targets_dir).download(path) == b"late"


def test_bin_contents_are_the_target_rows_of_each_bin(engine):
    """The database builds each bin's entries as JSON (one row per bin): the entries must be the rows,
    whatever the path holds, with exact lengths, and an empty bin must come back empty."""
    from warehouse_tuf import db

    paths = ["ab/cd/é-1.0.tar.gz", 'q"uote\\back/slash.whl', "\u2603/snow-man_1.0.zip", "plain/a-1.whl"]
    rows = [{"path": path, "bin_index": n % 2, "length": 2**53 + n, "hashes": {"sha256": f"{n:064x}",
             "blake2b_256": f"{n + 7:064x}"}, "kind": "file", "project": "p", "release": "1"}
            for n, path in enumerate(paths)]
    with Session(engine) as session:
        db.upsert_targets(session, rows)
        session.commit()
        contents = dict(db.bin_contents(session, [0, 1, 2]))
    expected: dict[int, dict] = {0: {}, 1: {}, 2: {}}
    for row in rows:
        expected[row["bin_index"]][row["path"]] = {"hashes": row["hashes"], "length": row["length"]}
    assert contents == expected


def test_of_two_commits_that_find_no_request_standing_only_one_sends(engine):
    """Both read the request cleared; the one whose update comes second finds it taken and sends nothing."""
    import datetime

    from warehouse_tuf import publish_requests

    stale = datetime.timedelta(minutes=1)
    raced: list[bool] = []

    def another_sender_in_between(conn, cursor, statement, *args) -> None:
        if not raced and statement.lstrip().upper().startswith("UPDATE TUF_PUBLISH_REQUEST"):
            raced.append(False)  # its own update comes here too: only the first one is raced
            raced[0] = publish_requests.request(engine, stale)

    event.listen(engine, "before_cursor_execute", another_sender_in_between)
    assert not publish_requests.request(engine, stale)
    assert raced == [True]


def test_a_publish_writes_no_row_while_it_writes_to_storage(engine, tmp_path):
    """The result's rows change only once storage holds the bin, the snapshot and the timestamp:
    on SQLite a write statement takes the one write lock, and uploads would wait out the fsyncs."""
    repo = _manager(engine, tmp_path)
    repo.bootstrap_development()
    targets_dir = tmp_path / "targets"
    path = publish_file(repo, targets_dir, "one-1.0.whl", b"one upload")
    repo.db.commit()
    events: list[str] = []
    storage = repo.repository.storage
    put_many = storage.put_many

    def recorded_put_many(files) -> None:
        put_many(files)
        events.extend(f"stored {name}" for name in files)

    def recorded_write(conn, cursor, statement, *args) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            events.append("write")

    storage.put_many = recorded_put_many
    event.listen(engine, "before_cursor_execute", recorded_write)
    repo.publish()

    first_store = next(n for n, item in enumerate(events) if item.startswith("stored"))
    timestamp_stored = events.index("stored timestamp.json")
    assert "write" not in events[first_store:timestamp_stored], events
    assert "write" in events[timestamp_stored:]  # the result is recorded, after storage
    assert Client(tmp_path / "metadata", targets_dir).download(path) == b"one upload"
