"""What every reliability scenario shares: a throw-away repository, observers and the report.

The observers check the repository the way its users see it: the bytes in
storage (every ``N.<role>.json`` ever seen, by content hash) and a python-tuf
ngclient with a persistent cache (dev/testing/tufclient.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata

from dev.models import Base as HostBase
from dev.testing.tufclient import Client
from warehouse_tuf import ceremony, signing
from warehouse_tuf.migrations import upgrade
from warehouse_tuf.models import PendingChange, RoleVersion, Target
from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings, describe
from warehouse_tuf.storage import LocalStorage

POSTGRES_URL = os.environ.get("TUF_SOAK_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
#: What the crash harness kills (dev/soak/killable.py runs each).
CRASH_OPERATIONS = ("publish", "refresh", "backfill", "rotate")
_ENVVARS = {key: envvar for key, envvar, _, _ in describe()}
_VERSIONED = re.compile(r"^(\d+)\.(.+)\.json$")


@dataclasses.dataclass
class Report:
    """The figures of one scenario run; ``--json`` prints it as the last line."""

    scenario: str
    trials: int = 0
    uploads: int = 0
    failures: int = 0
    discrepancies: int = 0
    checks: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    def failure(self, message: str) -> None:
        """An operation that should have succeeded (or failed cleanly) did not."""
        self.failures += 1
        self.problems.append(f"failure: {message}")

    def discrepancy(self, message: str) -> None:
        """What users would see differs from what the invariants promise."""
        self.discrepancies += 1
        self.problems.append(f"discrepancy: {message}")

    @classmethod
    def combine(cls, scenario: str, reports: list[Report]) -> Report:
        """One report of several parts: sums, each part's figures under its name."""
        total = cls(scenario)
        for part in reports:
            for name in ("trials", "uploads", "failures", "discrepancies", "checks", "seconds"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.details[part.scenario] = {
                "trials": part.trials, "uploads": part.uploads, "failures": part.failures,
                "discrepancies": part.discrepancies, "seconds": part.seconds, **part.details,
            }
            total.problems += [f"{part.scenario}: {problem}" for problem in part.problems]
        total.seconds = round(total.seconds, 1)
        return total

    @property
    def ok(self) -> bool:
        return not self.failures and not self.discrepancies

    def emit(self, as_json: bool) -> None:
        for problem in self.problems[:50]:
            click.echo(problem, err=True)
        size = ", ".join(f"{count} {name}" for name, count in
                         (("trials", self.trials), ("uploads", self.uploads)) if count) or "0 trials"
        summary = (f"soak {self.scenario}: {size}, {self.checks} checks, {self.failures} failures, "
                   f"{self.discrepancies} discrepancies in {self.seconds:.1f}s")
        if as_json:
            click.echo(summary, err=True)
            data = dataclasses.asdict(self)
            data["problems"] = self.problems[:50]
            click.echo(json.dumps(data, sort_keys=True))
        else:
            click.echo(summary)
            for key, value in self.details.items():
                click.echo(f"  {key}: {value}")
        if not self.ok:
            sys.exit(1)


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """The URL of a fresh, empty database: a SQLite file or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'index.sqlite'}"
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"tuf_soak_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclasses.dataclass
class Sandbox:
    """A bootstrapped repository in a temporary directory, with its own database."""

    url: str
    directory: Path
    bins: int
    #: Every online key ever generated for this repository: key id -> private key file.
    keyring: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``tuf.online_signers``: empty for the development key; set after a key rotation.
    online_signers: str = ""
    #: Folders outside ``directory`` to delete with it (the clients' caches).
    leftovers: list[Path] = dataclasses.field(default_factory=list)

    @property
    def metadata(self) -> Path:
        return self.directory / "metadata"

    @property
    def simple(self) -> Path:
        return self.directory / "simple"

    @property
    def packages(self) -> Path:
        return self.directory / "packages"

    @property
    def settings_values(self) -> dict[str, Any]:
        return {
            "tuf.env": "development",  # the extension defaults to production
            "tuf.dev_keys_path": str(self.directory / "keys"),
            "tuf.bin_count": self.bins,
            "tuf.simple_renderer": "",
            "tuf.storage.path": str(self.metadata),
            "tuf.simple.path": str(self.simple),
            "tuf.lock_timeout": "2m",
            "tuf.online_signers": self.online_signers,
        }

    @property
    def host_env(self) -> dict[str, str]:
        """Environment for ``python -m dev ...`` (embedded mode) on this repository."""
        env = {"TUF_DEV_MODE": "embedded", "TUF_DEV_DATA": str(self.directory / "host"),
               "TUF_DEV_DATABASE_URL": self.url}
        env.update((_ENVVARS[key], str(value)) for key, value in self.settings_values.items())
        return env

    def client(self) -> Client:
        """A user's client with a persistent cache (dev/testing/tufclient.py), deleted with the sandbox."""
        user = Client(self.metadata, self.packages)
        self.leftovers += [user.cache, user.downloads]
        return user

    def settings(self) -> TUFSettings:
        return TUFSettings.from_settings(self.settings_values, environ={})

    def manager(self, session: Session, storage: LocalStorage | None = None) -> TUFManager:
        return TUFManager(session, self.settings(), storage or LocalStorage(self.metadata),
                          LocalStorage(self.simple))

    def run_child(self, args: list[str], extra: dict | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``python -m dev.soak.killable`` on this repository."""
        config = json.dumps({"url": self.url, "settings": self.settings_values,
                             "packages": str(self.packages), "keyring": self.keyring, **(extra or {})})
        return subprocess.run(
            [sys.executable, "-m", "dev.soak.killable", config, *args],
            capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parents[2],
        )


def store_file(packages: Path, name: str) -> tuple[str, tuple[int, str]]:
    """Store a distribution file under a Warehouse-style path.

    Returns its target path and (length, sha256). The bytes derive from the
    name, so any process can tell what a name's target must be.
    """
    data = f"soak file {name}".encode()
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{name}"
    target = packages / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return path, (len(data), hashlib.sha256(data).hexdigest())


def record_file(manager: TUFManager, packages: Path, name: str) -> tuple[str, tuple[int, str]]:
    """Store a file and record it as a target, in the manager's (uncommitted) transaction."""
    path, (length, sha256) = store_file(packages, name)
    manager.record_target(path, length, {"sha256": sha256})
    return path, (length, sha256)


@contextlib.contextmanager
def sandbox(kind: str = "sqlite", bins: int = 16) -> Iterator[Sandbox]:
    """A bootstrapped repository (development keys) that is deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="tuf-soak-"))
    leftovers = [directory]
    try:
        with database(kind, directory) as url:
            engine = create_engine(url)
            HostBase.metadata.create_all(engine)  # the host's tables, for backfill
            upgrade(engine)
            box = Sandbox(url, directory, bins, leftovers=leftovers)
            with Session(engine) as session:
                box.manager(session).bootstrap_development()
            online = directory / "keys" / "online.pem"
            box.keyring[signing.load_key_file(online).public_key.keyid] = str(online)
            engine.dispose()
            yield box
    finally:
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)


class VersionLog:
    """Every metadata version ever observed in storage, by content hash.

    A version number that names two different contents, or a timestamp that
    goes backwards, is what a client would be hurt by. (Numbers may be skipped:
    a number reserved by a run that died is never handed out again.)
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], str] = {}
        self.conflicts: set[tuple[str, int, str]] = set()
        self.stats: dict[str, tuple[int, int, int]] = {}
        self.last_timestamp = 0

    def observe(self, metadata: Path, report: Report) -> None:
        report.checks += 1
        for path in metadata.iterdir() if metadata.is_dir() else ():
            if path.name.startswith(".tmp-"):
                continue  # a write in progress: seen once renamed into place
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # renamed or deleted since the listing
            identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self.stats.get(path.name) == identity:
                continue  # unchanged since it was last read (a rewrite is a new inode)
            self.stats[path.name] = identity
            match = _VERSIONED.match(path.name)
            if match:
                self._record(match.group(2), int(match.group(1)), path.read_bytes(), report)
            elif path.name == "timestamp.json":
                data = path.read_bytes()
                version = json.loads(data)["signed"]["version"]
                if version < self.last_timestamp:
                    report.discrepancy(f"timestamp.json went back from {self.last_timestamp} to {version}")
                self.last_timestamp = max(self.last_timestamp, version)
                self._record("timestamp", version, data, report)

    def _record(self, role: str, version: int, data: bytes, report: Report) -> None:
        digest = hashlib.sha256(data).hexdigest()
        known = self.seen.setdefault((role, version), digest)
        if known != digest and (role, version, digest) not in self.conflicts:
            self.conflicts.add((role, version, digest))
            report.discrepancy(f"version {version} of {role} names two different contents")


def published_targets(metadata: Path) -> dict[str, tuple[int, str]]:
    """Path -> (length, sha256) of every target the published metadata lists, read from storage."""
    timestamp = json.loads((metadata / "timestamp.json").read_bytes())
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((metadata / f"{version}.snapshot.json").read_bytes())
    listed = {}
    for name, meta in snapshot["signed"]["meta"].items():
        if name == "targets.json":
            continue
        role = json.loads((metadata / f"{meta['version']}.{name}").read_bytes())
        for path, info in role["signed"]["targets"].items():
            listed[path] = (info["length"], info["hashes"]["sha256"])
    return listed


def installed_roles(session: Session) -> tuple[Metadata, Metadata]:
    """The root and targets installed in the database."""
    stored = {row.name: row.signed_bytes for row in
              session.scalars(select(RoleVersion).where(RoleVersion.name.in_(("root", "targets"))))}
    return Metadata.from_bytes(stored["root"]), Metadata.from_bytes(stored["targets"])


def prepare_rotation(session: Session, box: Sandbox, name: str) -> dict:
    """A new online key, and a ceremony payload of the next root and targets trusting it.

    Signed with the sandbox's offline keys. Returns what dev/soak/killable.py
    takes: the payload file and the key ids to sign with during the handover.
    """
    root, targets = installed_roles(session)
    session.rollback()
    old = signing.online_keys(root.signed, targets.signed)
    key_file = box.directory / "keys" / f"{name}.pem"
    key = signing.generate_key_file(key_file)
    box.keyring[key.keyid] = str(key_file)
    next_root, next_targets = ceremony.next_roles(root, targets, online_keys=[key])
    next_root.sign(signing.load_key_file(box.directory / "keys" / "root.pem"))
    next_targets.sign(signing.load_key_file(box.directory / "keys" / "targets.pem"))
    payload = box.directory / f"{name}.json"
    ceremony.Payload(trusted_root=root, root=next_root, targets=next_targets).write(payload)
    return {"payload": str(payload), "rotating": [*old.keys, key.keyid]}


def database_state(session: Session) -> dict[str, Any]:
    """The extension's view in the database: targets, pending changes, unfinished roles."""
    session.rollback()
    return {
        "targets": {path: (length, hashes["sha256"]) for path, length, hashes
                    in session.execute(select(Target.path, Target.length, Target.hashes))},
        "pending": session.scalar(select(func.count()).select_from(PendingChange)),
        "unfinished": sorted(session.scalars(
            select(RoleVersion.name).where(RoleVersion.reserved_version > RoleVersion.version)
        )),
    }


def compare_targets(expected: dict, published: dict, report: Report, label: str) -> None:
    """Report every target that is missing, extra, or listed with other bytes."""
    report.checks += 1
    missing = expected.keys() - published.keys()
    extra = published.keys() - expected.keys()
    changed = [p for p in expected.keys() & published.keys() if expected[p] != published[p]]
    for kind, paths in (("missing", missing), ("extra", extra), ("different", changed)):
        if paths:
            report.discrepancy(f"{label}: {len(paths)} target(s) {kind}, e.g. {sorted(paths)[0]!r}")
