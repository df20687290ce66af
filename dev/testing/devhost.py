"""Running the development host (dev/) for tests and harnesses: in process, or as servers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tuf.ngclient import Updater, UpdaterConfig

from dev.app import configure, initialize
from dev.demo import build_dists  # noqa: F401  (tests build their uploads with it)
from dev.models import File, JournalEntry, Project, Release, file_path
from dev.testing.tufclient import client_folders
from warehouse_tuf.models import PendingChange

ROOT = Path(__file__).resolve().parents[2]
USERNAME = PASSWORD = "tuf-dev"


@dataclasses.dataclass
class Host:
    """A served development host: its URL, data directory, database and settings (env)."""

    base: str
    data: Path
    engine: Any
    env: dict[str, str]


def dev_config(data: Path, database_url: str, **settings: Any) -> Any:
    """A configured, initialized (bootstrapped) development host, in this process."""
    values = {"dev.data": str(data), "database.url": database_url, "tuf.bin_count": 16}
    values.update(settings)
    config = configure(values)
    initialize(config)
    return config


def add_file(session: Session, project: str, version: str, filename: str, data: bytes, *,
             journal: bool = False) -> File:
    """Add a File (with its Project and Release when new), as an upload does; not flushed.

    The new Project's ``normalized_name`` is the database's: None until flushed.
    With ``journal``, also the journal entries the upload view writes ("create",
    "new release", "add py3 file ..."), which re-sign the project's pages; a new
    project is then flushed first, as the view does, so that the journals'
    trigger finds it and moves its ``last_serial``.
    """
    found = session.scalars(
        select(Project).where(Project.normalized_name == func.normalize_pep426_name(project))
    ).first()
    if found is None:
        found = Project(name=project)
        session.add(found)
        if journal:
            session.flush()
            session.add(JournalEntry(name=project, action="create"))
    release = next((r for r in found.releases if r.version == version), None)
    if release is None:
        release = Release(project=found, version=version)
        session.add(release)
        if journal:
            session.add(JournalEntry(name=found.name, version=version, action="new release"))
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    file = File(
        release=release, filename=filename, path=file_path(blake2, filename), size=len(data),
        packagetype="bdist_wheel", python_version="py3", md5_digest=hashlib.md5(data).hexdigest(),
        sha256_digest=hashlib.sha256(data).hexdigest(), blake2_256_digest=blake2,
    )
    session.add(file)
    if journal:
        session.add(JournalEntry(name=found.name, version=version, action=f"add py3 file {filename}"))
    return file


def store_served_file(config: Any, path: str, data: bytes) -> None:
    """Put ``data`` in the host's files storage at ``path``, as sync_file_to_cache would."""
    with tempfile.NamedTemporaryFile() as source:
        source.write(data)
        source.flush()
        config.registry["dev.files"].store(path, source.name)


def _engine(config_or_engine: Any) -> Any:
    registry = getattr(config_or_engine, "registry", None)
    return registry["sqlalchemy.engine"] if registry is not None else config_or_engine


def verify_like_a_client(config: Any, path: str, *, page: bool = False) -> bytes | None:
    """ngclient refreshes, downloads and verifies ``path`` from the host's storage; None if unlisted.

    Then flips one byte of the stored copy and checks that the client refuses
    it, and restores it. Pages are fetched hash-prefixed from the simple storage.
    """
    from tuf.api import exceptions as tuf_exceptions

    from dev.testing.tufclient import SIMPLE_URL, TARGETS_URL, Client
    from warehouse_tuf.targets import prefixed_name

    settings = config.registry.settings
    client = Client(metadata=Path(settings["tuf.storage.path"]), targets=Path(settings["files.path"]),
                    simple=Path(settings["tuf.simple.path"]))
    base = SIMPLE_URL if page else TARGETS_URL
    data = client.download(path, target_base_url=base, prefix=page)
    if data is None:
        return None
    stored = Path(settings["files.path"], path)
    if page:
        stored = Path(settings["tuf.simple.path"], prefixed_name(path, hashlib.sha256(data).hexdigest()))
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    try:
        client.download(path, target_base_url=base, prefix=page)
    except tuf_exceptions.LengthOrHashMismatchError:
        return data
    finally:
        stored.write_bytes(data)
    raise AssertionError(f"the client accepted a tampered {path}")


def pending(config: Any) -> list[tuple[str, str | None, str | None]]:
    """(kind, path, project) of every pending change, oldest first (a config or an engine)."""
    with Session(_engine(config)) as session:
        rows = session.execute(
            select(PendingChange.kind, PendingChange.path, PendingChange.project)
            .order_by(PendingChange.id)
        )
        return [tuple(row) for row in rows]


def pending_count(config: Any) -> int:
    with Session(_engine(config)) as session:
        return session.scalar(select(func.count()).select_from(PendingChange))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, accept: str | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of a GET, errors included."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def http_delete(url: str, user: str = USERNAME, password: str = PASSWORD) -> int:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, method="DELETE", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class HTTPClient:
    """A python-tuf ngclient user of a served index, trusting the first root it fetched."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cache, self.downloads = client_folders(self, "tuf-http")
        status, root, _ = http_get(f"{base}/tuf/metadata/1.root.json")
        assert status == 200, f"no 1.root.json at {base}/tuf/metadata/"
        self._bootstrap: bytes | None = root

    def updater(self, target_base_url: str, prefix: bool) -> Updater:
        updater = Updater(
            metadata_dir=str(self.cache), metadata_base_url=f"{self.base}/tuf/metadata/",
            target_dir=str(self.downloads), target_base_url=target_base_url,
            config=UpdaterConfig(prefix_targets_with_hash=prefix), bootstrap=self._bootstrap,
        )
        self._bootstrap = None
        updater.refresh()
        return updater

    def download(self, path: str, *, page: bool = False) -> bytes | None:
        """Verify and download ``path``: a page from /simple/ (hash-prefixed), else from /packages/."""
        base = f"{self.base}/simple/" if page else f"{self.base}/packages/"
        updater = self.updater(base, prefix=page)
        info = updater.get_targetinfo(path)
        if info is None:
            return None
        target = self.downloads / hashlib.sha256(path.encode()).hexdigest()
        return Path(updater.download_target(info, filepath=str(target))).read_bytes()

    def timestamp_version(self) -> int:
        return json.loads((self.cache / "timestamp.json").read_bytes())["signed"]["version"]


def twine_upload(base: str, *dists: Path, password: str = PASSWORD) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{base}/legacy/", "-u", USERNAME, "-p", password, *map(str, dists)],
        capture_output=True, text=True, timeout=300,
    )


def dist_path(dist: Path) -> str:
    """The File.path target of a distribution file."""
    return file_path(hashlib.blake2b(dist.read_bytes(), digest_size=32).hexdigest(), dist.name)


def pip_install(base: str, project: str, target: Path) -> subprocess.CompletedProcess:
    """pip install from the served /simple/ only (wheel, no dependencies, no other network)."""
    # No configuration of this machine's pip (find-links, extra indexes): only the host's /simple/.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1")
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
         "--disable-pip-version-check", "--target", str(target), "--index-url", f"{base}/simple/",
         project],
        capture_output=True, text=True, timeout=300, env=env,
    )


def run_tufjs(base: str, workdir: Path, targets: list[tuple[str, bool]]) -> subprocess.CompletedProcess:
    """tuf-js (tests/js/verify.js) verifies ``(path, is_page)`` targets as served at ``base``.

    Its stdout is one JSON list of {path, found, length, sha256}; it exits
    non-zero when verification fails.
    """
    workdir.mkdir(parents=True)
    root = workdir / "1.root.json"
    status, data, _ = http_get(f"{base}/tuf/metadata/1.root.json")
    assert status == 200
    root.write_bytes(data)
    spec = {
        "metadataBaseUrl": f"{base}/tuf/metadata/", "root": str(root), "workDir": str(workdir),
        "targets": [{"path": path, "prefix": page,
                     "targetBaseUrl": f"{base}/simple/" if page else f"{base}/packages/"}
                    for path, page in targets],
    }
    return subprocess.run(["node", str(ROOT / "tests" / "js" / "verify.js"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=300)


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m dev serve`` on a free local port; returns it, and its URL, once it answers."""
    port = free_port()
    server = start_dev_process("serve", "--port", str(port), env=env, log=log)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"dev serve exited: {log.read_text()[-3000:]}")
        try:
            return http_get(f"{base}/simple/")[0] == 200
        except OSError:
            return False

    wait_until(answers, 120, "the development host to answer")
    return server, base


def dev_command(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``python -m dev ...`` with the host's settings in ``env``."""
    return subprocess.run([sys.executable, "-m", "dev", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, **kwargs)


def start_dev_process(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-running ``python -m dev ...`` (serve, worker, beat), output to ``log``."""
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "dev", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
