"""The operations CLI: status, metrics and log lines, and no private key material anywhere."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session
from zope.interface import Interface

from dev.testing.tufclient import Client
from tests.conftest import make_configurator
from tests.keyholders import make_holder, run
from tests.test_services import publish_file
from warehouse_tuf.cli import service


class IRecordingMetrics(Interface):
    """The test host's metrics interface (Warehouse's IMetricsService shape)."""


class RecordingMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def increment(self, metric, value=1, tags=None, sample_rate=1):
        self.calls.append(("increment", metric, value))

    def gauge(self, metric, value, tags=None, sample_rate=1):
        self.calls.append(("gauge", metric, value))

    @contextlib.contextmanager
    def timed(self, metric=None, tags=None, sample_rate=1, use_ms=None):
        yield
        self.calls.append(("timed", metric, 0))


def test_status_table_and_json_with_keys_signers_and_expiry_warning(engine, tmp_path):
    config = make_configurator(engine, tmp_path, **{"tuf.expiry.targets": "40d",
                                                    "tuf.metadata_url": "https://files.example/metadata/"})
    result = run(config, "status", ok=False)
    assert result.exit_code == 1 and result.output.splitlines()[:2] == ["1 problem(s)", "  problem: not bootstrapped"]
    run(config, "bootstrap-dev")
    result = run(config, "status", "--json", ok=False)
    assert result.exit_code == 1  # the targets expiry below
    report = json.loads(result.output)
    roles = {role["role"]: role for role in report["roles"]}
    assert set(roles) == {"root", "targets", "snapshot", "timestamp"}
    assert roles["snapshot"]["keyids"] == roles["timestamp"]["keyids"] and roles["root"]["threshold"] == 1
    assert report["bins"]["count"] == 16 and report["pending"] == 0
    assert 0 < report["seconds_to_earliest_expiry"] <= 86400
    assert report["development_keys"] and report["metadata_url"] == "https://files.example/metadata/"
    # targets expires in 40 days: well inside the 60 days the ceremony needs to be arranged
    assert [p for p in report["problems"] if p.startswith("targets expires at")]
    table = run(config, "status", ok=False).output.splitlines()
    assert table[0] == "1 problem(s)" and table[1].startswith("  problem: targets expires at")
    assert "metadata:    https://files.example/metadata/" in table
    rows = {line.split()[0]: line for line in table}
    # TUF expiries are whole seconds: 40 days from the bootstrap reads as 39d or 40d
    assert re.search(r" in (39|40)d \(20", rows["targets"]) and re.search(r" in 2[34]h ", rows["timestamp"]), table
    keyid = roles["root"]["keyids"][0]
    assert f"1 of 1: {keyid[:12]}" in rows["root"] and keyid[:13] not in rows["root"]
    assert rows["pending:"].endswith("0 change(s)") and rows["last"].startswith("last publish: ")


def test_status_is_ok_on_a_healthy_development_repository_and_2_when_unreadable(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")
    with service(config) as manager:
        publish_file(manager, tmp_path / "packages", "a-1.0.tar.gz", b"a")
        manager.db.commit()
    lines = run(config, "status").output.splitlines()  # exit 0
    assert lines[0] == "OK" and "keys:        INSECURE development keys" in lines
    pending = next(line for line in lines if line.startswith("pending:"))
    assert pending.startswith("pending:     1 change(s), oldest ") and pending.endswith("s ago")
    (tmp_path / "metadata" / "timestamp.json").unlink()
    result = run(config, "status", ok=False)
    assert result.exit_code == 1 and result.output.startswith("1 problem(s)\n  problem: storage is missing")
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE tuf_roles RENAME TO tuf_roles_gone")
    try:
        result = run(config, "status", ok=False)
        assert result.exit_code == 2 and result.output.startswith("error: cannot read the repository: ")
        assert len(result.output.strip().splitlines()) == 1
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE tuf_roles_gone RENAME TO tuf_roles")


def test_status_names_a_signer_that_root_does_not_trust(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")
    stranger = make_holder(tmp_path, "stranger")
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": stranger.uri})
    report = json.loads(run(config, "status", "--json", ok=False).output)  # exit 1: a problem
    assert any(p.startswith("online signer:") and "cannot sign for trusted key" in p for p in report["problems"])
    assert report["online_signers"] == [{"keyid": None, "uri": "file2:…" + str(stranger.private)[-24:]}]


def test_publish_reports_metrics_and_a_structured_log_line(engine, tmp_path, caplog):
    metrics = RecordingMetrics()
    config = make_configurator(engine, tmp_path, **{"tuf.metrics_interface": f"{__name__}.IRecordingMetrics"})
    config.register_service(metrics, IRecordingMetrics)
    config.commit()
    run(config, "bootstrap-dev")
    with service(config) as manager:
        path = publish_file(manager, tmp_path / "packages", "a-1.0.tar.gz", b"a")
        manager.db.commit()
    with caplog.at_level(logging.INFO, logger="warehouse_tuf"):
        run(config, "publish")
    assert Client(tmp_path / "metadata", tmp_path / "packages").download(path) == b"a"
    names = {(kind, metric) for kind, metric, _ in metrics.calls}
    assert {("timed", "warehouse_tuf.publish.duration"), ("increment", "warehouse_tuf.changes"),
            ("gauge", "warehouse_tuf.pending"), ("gauge", "warehouse_tuf.oldest_pending_seconds"),
            ("gauge", "warehouse_tuf.seconds_to_earliest_expiry")} <= names
    assert ("increment", "warehouse_tuf.changes", 1) in metrics.calls
    assert ("gauge", "warehouse_tuf.pending", 0) in metrics.calls
    records = [r for r in caplog.records if getattr(r, "tuf", None)]
    assert [r.tuf["kind"] for r in records] == ["publish"]
    assert records[0].getMessage().startswith("tuf kind=publish changes=1 bins=1 snapshot=2 timestamp=2")


def test_without_a_host_metrics_service_publishing_still_works(engine, tmp_path):
    config = make_configurator(engine, tmp_path)  # warehouse.metrics is not importable here
    run(config, "bootstrap-dev")
    assert "nothing to publish" in run(config, "publish").output
    config = make_configurator(engine, tmp_path, **{"tuf.metrics_interface": f"{__name__}.IRecordingMetrics"})
    assert "nothing to publish" in run(config, "publish").output  # interface known, no service


def private_forms(holder) -> list[bytes]:
    """Every spelling of a private key a leak could take: PEM, its base64 body, raw, hex."""
    pem = holder.private.read_bytes()
    raw = load_pem_private_key(pem, None).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return [pem, body, raw, raw.hex().encode(), base64.b64encode(raw), b"PRIVATE KEY"]


def database_dump(engine) -> bytes:
    tables = MetaData()
    tables.reflect(engine)
    parts = []
    with Session(engine) as session:
        for table in tables.sorted_tables:
            for row in session.execute(select(table)):
                # bytea comes back as memoryview on PostgreSQL: search its bytes, not its repr
                parts.extend(bytes(v) if isinstance(v, memoryview | bytes) else repr(v).encode() for v in row)
    return b"\n".join(parts)


def test_no_private_key_material_in_database_logs_metadata_or_output(engine, tmp_path, caplog):
    names = ["root1", "root2", "root3", "targets1", "targets2", "online1", "online2"]
    h = {name: make_holder(tmp_path, name) for name in names}
    payload = tmp_path / "payload.json"
    outputs = []
    caplog.set_level(logging.DEBUG)

    def cli(config, *args, ok=True):
        result = run(config, *args, ok=ok)
        outputs.append(result.output.encode())
        return result

    cli(None, "ceremony", "init", "--root-key", h["root1"].public, "--root-key", h["root2"].public,
        "--root-key", h["root3"].public, "--root-threshold", 2, "--targets-key", h["targets1"].public,
        "--targets-key", h["targets2"].public, "--targets-threshold", 2,
        "--online-key", h["online1"].public, "--bin-count", 16, "-o", payload)
    cli(None, "ceremony", "sign", payload, "--key", h["online1"].uri, ok=False)  # not a ceremony key
    cli(None, "ceremony", "init", "--root-key", h["root1"].private, "--root-threshold", 1,
        "--targets-key", h["targets1"].public, "--targets-threshold", 1,
        "--online-key", h["online1"].public, "--bin-count", 16, "-o", tmp_path / "x.json", ok=False)
    for name in ("root1", "root2", "targets1", "targets2"):
        cli(None, "ceremony", "sign", payload, "--key", h[name].uri)
    cli(None, "ceremony", "verify", payload)
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online1"].uri})
    cli(config, "bootstrap", payload)
    with service(config) as manager:
        path = publish_file(manager, tmp_path / "packages", "a-1.0.tar.gz", b"a")
        manager.db.commit()
    cli(config, "publish")
    cli(config, "refresh")
    rotation = tmp_path / "rotation.json"
    cli(None, "ceremony", "prepare", "--root", tmp_path / "metadata" / "1.root.json",
        "--targets", tmp_path / "metadata" / "1.targets.json", "--online-key", h["online2"].public,
        "-o", rotation)
    for name in ("root1", "root3", "targets1", "targets2"):
        cli(None, "ceremony", "sign", rotation, "--key", h[name].uri)
    cli(config, "install", rotation, "--online-signer", h["online1"].signer_entry, ok=False)  # no new signer
    cli(config, "install", rotation, "--online-signer", h["online1"].signer_entry,
        "--online-signer", h["online2"].signer_entry)
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online2"].uri})
    cli(config, "status")
    cli(config, "status", "--json")
    cli(config, "gc", "--dry-run")
    assert Client(tmp_path / "metadata", tmp_path / "packages").download(path) == b"a"

    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records).encode()
    stored = [p.read_bytes() for folder in ("metadata", "simple")
              for p in (tmp_path / folder).rglob("*") if p.is_file()]
    ceremony_files = [payload.read_bytes(), rotation.read_bytes()]
    haystacks = {"cli output": b"\n".join(outputs), "logs": logs, "database": database_dump(engine),
                 "metadata": b"\n".join(stored), "ceremony payloads": b"\n".join(ceremony_files)}
    assert b'"_type":"root"' in haystacks["database"] and b'"_type":"snapshot"' in haystacks["metadata"]
    for holder in h.values():
        for form in private_forms(holder):
            for where, haystack in haystacks.items():
                assert form not in haystack, f"{holder.name}'s private key ({form[:16]!r}...) is in the {where}"
