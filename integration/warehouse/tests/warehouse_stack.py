"""Run a real Warehouse (web, Celery worker and beat) with the extension, on this machine.

Used by the end-to-end tests beside this file and by ``../bench_uploads.py``.

Inputs (environment):

- ``WAREHOUSE_TREE``: an unpacked Warehouse source tree (patched to enable the
  extension, or pristine for the benchmark's "without" side);
- ``WAREHOUSE_PYTHON``: the python of a venv with Warehouse's pinned
  requirements and warehouse-tuf installed.

A :class:`Stack` owns one temporary directory, one fresh PostgreSQL database,
one private ``redis-server`` on a free port, and the processes it starts
(waitress serving ``configure().make_wsgi_app()``, ``celery -A warehouse
worker``, ``celery -A warehouse beat``, a static HTTP server over the public
storage: files, TUF metadata and the hash-prefixed simple pages). ``close()``
stops exactly those processes and drops the database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

POSTGRES_ADMIN_URL = os.environ.get(
    "WAREHOUSE_E2E_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class SetupError(RuntimeError):
    """The environment the integration tests need is missing."""


def warehouse_inputs() -> tuple[Path, Path]:
    """(WAREHOUSE_TREE, WAREHOUSE_PYTHON), checked; a clear error when either is missing."""
    tree = os.environ.get("WAREHOUSE_TREE")
    python = os.environ.get("WAREHOUSE_PYTHON")
    missing = [name for name, value in (("WAREHOUSE_TREE", tree), ("WAREHOUSE_PYTHON", python))
               if not value]
    if missing:
        raise SetupError(
            f"{' and '.join(missing)} not set: these tests run the extension inside a real "
            "Warehouse; set WAREHOUSE_TREE to the (patched, unpacked) Warehouse source tree and "
            "WAREHOUSE_PYTHON to the python of a venv with its requirements and warehouse-tuf "
            "(make test-warehouse does both)"
        )
    tree_path, python_path = Path(tree).resolve(), Path(python)
    if not (tree_path / "warehouse" / "config.py").is_file():
        raise SetupError(f"WAREHOUSE_TREE={tree}: no warehouse/config.py there")
    if not os.access(python_path, os.X_OK):
        raise SetupError(f"WAREHOUSE_PYTHON={python}: not an executable")
    return tree_path, python_path


STATIC_MANIFESTS = ("warehouse/static/dist/manifest.json", "warehouse/admin/static/dist/manifest.json")


def ensure_static_manifests(tree: Path) -> list[str]:
    """Empty asset manifests where the tree has no built static assets; the paths written.

    ``configure()`` reads ``static/dist/manifest.json`` (Warehouse's and the
    admin's), which the front-end build (webpack, not run here: it needs the
    network) produces; Warehouse's own ``bin/tests`` creates the empty ``dist/``
    directories the same way. Pages these tests use (uploads, /simple/) refer
    to no static asset.
    """
    written = []
    for relative in STATIC_MANIFESTS:
        path = tree / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
            written.append(relative)
    return written


def project_python() -> Path:
    """The project's own venv python (tuf ngclient, twine, build): ``<repo>/.venv/bin/python``."""
    python = Path(os.environ.get("WAREHOUSE_TUF_CLIENT_PYTHON", REPO / ".venv" / "bin" / "python"))
    if not os.access(python, os.X_OK):
        raise SetupError(f"{python} missing: run 'make install' (the project's venv has ngclient, "
                         "twine and build)")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A local port nobody listens on (for services Warehouse names but these flows never reach)."""
    return free_port()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, accept: str | None = None, timeout: float = 30) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def ed25519_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A new ed25519 key: ``<name>.pem`` (private, PKCS8) and ``<name>.pub.pem`` (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


class Stack:
    """One Warehouse: database, private Redis, storage directories and processes."""

    def __init__(self, tree: Path, python: Path, work: Path, *, label: str = "wh",
                 bin_count: int = 16, extra_env: dict[str, str] | None = None) -> None:
        self.tree, self.python, self.work, self.label = tree, python, work, label
        self.work.mkdir(parents=True, exist_ok=True)
        self.public = work / "public"  # served by the static server: packages/, metadata/, simple/
        for sub in ("public/packages", "public/metadata", "public/simple", "archive", "wh-simple",
                    "docs", "sponsorlogos", "logs", "keys"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.database = f"wh_e2e_{label}_{uuid.uuid4().hex[:10]}"
        self.database_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{self.database}"
        self.redis_port = free_port()
        self.web_port = free_port()
        self.static_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.static = f"http://127.0.0.1:{self.static_port}"
        self.metadata_url = f"{self.static}/metadata/"
        self.files_url = f"{self.static}/packages/"
        self.simple_url = f"{self.static}/simple/"
        closed = closed_port()
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(work)),
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([str(tree), str(HERE)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "WAREHOUSE_ENV": "production",
            "WAREHOUSE_TOKEN": "insecure-e2e-token",
            "WAREHOUSE_IP_SALT": "insecure e2e salt",
            # Routes match on request.domain, the Host header without its port.
            "WAREHOUSE_DOMAIN": "127.0.0.1",
            "DATABASE_URL": self.database_url,
            "BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/10",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ELASTICSEARCH_URL": f"http://127.0.0.1:{closed}/development",
            "SESSION_SECRET": "an insecure e2e secret",
            "TOKEN_PASSWORD_SECRET": "an insecure password reset secret key",
            "TOKEN_EMAIL_SECRET": "an insecure email verification secret key",
            "TOKEN_TWO_FACTOR_SECRET": "an insecure two-factor auth secret key",
            "TOKEN_REMEMBER_DEVICE_SECRET": "an insecure remember device auth secret key",
            "CAMO_URL": "{request.scheme}://{request.domain}:9000/",
            "CAMO_KEY": "insecurecamokey",
            "DOCS_URL": "https://pythonhosted.org/{project}/",
            "HIBP_API_KEY": "something-not-real",
            "FILES_BACKEND": (f"warehouse.packaging.services.LocalFileStorage "
                              f"path={self.public / 'packages'}/ url={self.files_url}{{path}}"),
            "ARCHIVE_FILES_BACKEND": (f"warehouse.packaging.services.LocalArchiveFileStorage "
                                      f"path={work / 'archive'}/ url={self.static}/archive/{{path}}"),
            "SIMPLE_BACKEND": (f"warehouse.packaging.services.LocalSimpleStorage "
                               f"path={work / 'wh-simple'}/ url={self.static}/wh-simple/{{path}}"),
            "DOCS_BACKEND": f"warehouse.packaging.services.LocalDocsStorage path={work / 'docs'}/",
            "SPONSORLOGOS_BACKEND": (f"warehouse.admin.services.LocalSponsorLogoStorage "
                                     f"path={work / 'sponsorlogos'}/"),
            "MAIL_BACKEND": (f"warehouse.email.services.ConsoleAndSMTPEmailSender host=127.0.0.1 "
                             f"port={closed} ssl=false sender=noreply@example.org"),
            "BREACHED_EMAILS": "warehouse.accounts.NullEmailBreachedService",
            "BREACHED_PASSWORDS": "warehouse.accounts.NullPasswordBreachedService",
            "OIDC_BACKEND": "warehouse.oidc.services.NullOIDCPublisherService",
            "BILLING_BACKEND": (f"warehouse.subscriptions.services.MockStripeBillingService "
                                f"api_base=http://127.0.0.1:{closed} api_version=2020-08-27"),
            "GITHUB_TOKEN_SCANNING_META_API_URL": f"http://127.0.0.1:{closed}/meta",
            # A test and a benchmark create more projects per hour than Warehouse's defaults allow.
            "PROJECT_CREATE_USER_RATELIMIT_STRING": "100000 per hour",
            "PROJECT_CREATE_IP_RATELIMIT_STRING": "100000 per hour",
            # The extension's settings (Warehouse's environment, as production sets them).
            "TUF_BIN_COUNT": str(bin_count),
            "TUF_STORAGE_PATH": str(self.public / "metadata"),
            "TUF_SIMPLE_PATH": str(self.public / "simple"),
            "TUF_ONLINE_SIGNERS": f"file2:{work / 'keys' / 'online.pem'}",
            "TUF_METADATA_URL": self.metadata_url,
        }
        self.env.update(extra_env or {})

    # -- infrastructure --------------------------------------------------------------

    def _admin_engine(self):
        from sqlalchemy import create_engine

        return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def create_database(self) -> None:
        from sqlalchemy import text

        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        except Exception as exc:
            raise SetupError(f"PostgreSQL is required at {POSTGRES_ADMIN_URL}: {exc}") from exc
        finally:
            engine.dispose()

    def drop_database(self) -> None:
        from sqlalchemy import text

        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def start_redis(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise SetupError("redis-server is not installed")
        self._start("redis", [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(self.work)])
        wait_until(lambda: self._port_open(self.redis_port), 20, "the private redis-server")

    def start_static(self) -> None:
        """A static HTTP server over public/: what a CDN in front of the buckets would serve."""
        self._start("static", [str(project_python()), "-m", "http.server", "--bind", "127.0.0.1",
                               "--directory", str(self.public), str(self.static_port)])
        wait_until(lambda: self._port_open(self.static_port), 20, "the static file server")

    @staticmethod
    def _port_open(port: int) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    # -- Warehouse processes ------------------------------------------------------------

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.work / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, cwd=self.work, env=env or self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.work / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def start_web(self, threads: int = 4, env: dict[str, str] | None = None,
                  script: str = "serve_warehouse.py") -> None:
        """The web process: ``script`` beside this file (``serve_warehouse.py``; the benchmark's
        'with' side uses ``serve_warehouse_timed.py``)."""
        process = self._start("web", [str(self.python), str(HERE / script),
                                      str(self.web_port), str(threads)], env={**self.env, **(env or {})})

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the Warehouse web process exited:\n{self.log('web')}")
            return self._port_open(self.web_port) and http_get(f"{self.base}/simple/")[0] == 200

        wait_until(answers, 120, "Warehouse to answer /simple/", interval=0.5)

    def start_worker(self, concurrency: int = 2, env: dict[str, str] | None = None) -> None:
        offset = self._log_size("worker")
        self._start("worker", [str(self.python), "-m", "celery", "-A", "warehouse", "worker",
                               "-Q", "default", "-l", "info", "-c", str(concurrency),
                               "--without-gossip", "--without-mingle", "-n", f"{self.label}@%h"],
                    env={**self.env, **(env or {})})
        wait_until(lambda: "ready." in self._log_since("worker", offset) or self._dead("worker"), 120,
                   "the Celery worker to be ready", interval=0.5)
        if self._dead("worker"):
            raise AssertionError(f"the Celery worker exited:\n{self.log('worker')}")

    def start_beat(self, env: dict[str, str] | None = None) -> None:
        self._start("beat", [str(self.python), "-m", "celery", "-A", "warehouse", "beat",
                             "-S", "redbeat.RedBeatScheduler", "-l", "info",
                             "--schedule", str(self.work / "beat-schedule")],
                    env={**self.env, **(env or {})})

    def _log_size(self, name: str) -> int:
        path = self.work / "logs" / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def _log_since(self, name: str, offset: int) -> str:
        with (self.work / "logs" / f"{name}.log").open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def task_errors(self, limit: int = 3, about: str = "warehouse_tuf") -> str:
        """The worker's last failed tasks mentioning ``about`` (for assertion messages).

        (Warehouse's search reindex tasks always fail here: no Elasticsearch.)
        """
        lines = self.log("worker", 10**7).splitlines()
        failed = [i for i, line in enumerate(lines)
                  if ("raised unexpected" in line or "ERROR/" in line) and about in line]
        return "\n".join("\n".join(lines[i:i + 12]) for i in failed[-limit:]) or "(no failed task)"

    def _dead(self, name: str) -> bool:
        return self.processes[name].poll() is not None

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.drop_database()

    # -- commands -------------------------------------------------------------------

    def warehouse(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
                  timeout: float = 300) -> subprocess.CompletedProcess:
        """``python -m warehouse ARGS`` in Warehouse's environment."""
        result = subprocess.run([str(self.python), "-m", "warehouse", *args], cwd=self.work,
                                env={**self.env, **(env or {})}, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"warehouse {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result

    def ops(self, *args: str) -> Any:
        """``warehouse_ops.py ARGS`` (Warehouse's own code in a scripting request); its JSON."""
        result = subprocess.run([str(self.python), str(HERE / "warehouse_ops.py"), *args],
                                cwd=self.work, env=self.env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"warehouse_ops {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-5000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def ceremony(self) -> Path:
        """Keys and a signed bootstrap payload, through the extension's ``tuf ceremony`` commands.

        Root, targets and online keys are fresh ed25519 files in ``keys/`` (the online one is
        what TUF_ONLINE_SIGNERS names); threshold 1 each; the bin count is the stack's.
        """
        keys = self.work / "keys"
        pems = {role: ed25519_keypair(keys, role) for role in ("root", "targets", "online")}
        payload = self.work / "bootstrap-payload.json"
        payload.unlink(missing_ok=True)
        self.warehouse("tuf", "ceremony", "init", "--root-key", str(pems["root"][1]),
                       "--root-threshold", "1", "--targets-key", str(pems["targets"][1]),
                       "--targets-threshold", "1", "--online-key", str(pems["online"][1]),
                       "--bin-count", self.env["TUF_BIN_COUNT"], "-o", str(payload))
        for role in ("root", "targets"):
            self.warehouse("tuf", "ceremony", "sign", str(payload), "--key", f"file2:{pems[role][0]}")
        result = self.warehouse("tuf", "ceremony", "verify", str(payload))
        assert "ready to install" in result.stdout, result.stdout
        return payload

    def build_dists(self, name: str, version: str) -> list[Path]:
        """A real sdist and wheel of a tiny project (the project venv's ``python -m build``)."""
        module = name.replace("-", "_")
        source = self.work / "src" / f"{name}-{version}"
        (source / module).mkdir(parents=True)
        (source / module / "__init__.py").write_text(f'VERSION = "{version}"\n')
        (source / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=61", "wheel"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\nrequires-python = ">=3.8"\n'
            'description = "a package for the warehouse-tuf end-to-end tests in Warehouse"\n'
        )
        out = self.work / "dist" / f"{name}-{version}"
        subprocess.run([str(project_python()), "-m", "build", "--no-isolation", "--sdist", "--wheel",
                        "--outdir", str(out), str(source)], check=True, capture_output=True, timeout=300)
        dists = sorted(out.iterdir())
        assert [d.suffix for d in dists] == [".gz", ".whl"], dists
        return dists

    def twine_upload(self, token: str, *dists: Path) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TWINE_", "PIP_"))}
        return subprocess.run(
            [str(project_python()), "-m", "twine", "upload", "--non-interactive",
             "--disable-progress-bar", "--repository-url", f"{self.base}/legacy/",
             "-u", "__token__", "-p", token, *map(str, dists)],
            capture_output=True, text=True, timeout=300, env=env,
        )

    # -- clients --------------------------------------------------------------------

    def root_v1(self) -> Path:
        root = self.work / "trusted-1.root.json"
        if not root.exists():
            status, data, _ = http_get(f"{self.metadata_url}1.root.json")
            assert status == 200, f"no 1.root.json at {self.metadata_url} ({status})"
            root.write_bytes(data)
        return root

    def ngclient(self, targets: list[tuple[str, bool]], cache: str = "ngclient") -> list[dict] | dict:
        """python-tuf's ngclient verifies ``(path, is_page)`` targets; its results, or its error."""
        spec = {
            "metadata_url": self.metadata_url, "root": str(self.root_v1()),
            "cache": str(self.work / "clients" / cache),
            "targets": [{"path": path, "prefix": page,
                         "base_url": self.simple_url if page else self.files_url}
                        for path, page in targets],
        }
        result = subprocess.run([str(project_python()), str(HERE / "tuf_client.py"), json.dumps(spec)],
                                capture_output=True, text=True, timeout=300)
        lines = result.stdout.strip().splitlines()
        if not lines:
            raise AssertionError(f"tuf_client.py printed nothing: {result.stderr[-3000:]}")
        return json.loads(lines[-1])

    def tufjs(self, targets: list[tuple[str, bool]]) -> subprocess.CompletedProcess:
        """tuf-js (tests/js/verify.js) verifies ``(path, is_page)`` targets, with a fresh cache."""
        if shutil.which("node") is None:
            raise SetupError("node is not installed (tuf-js runs on Node.js)")
        if not (REPO / "tests" / "js" / "node_modules" / "tuf-js").is_dir():
            raise SetupError("tests/js/node_modules missing: run 'make install'")
        workdir = self.work / "clients" / f"tufjs-{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
        spec = {
            "metadataBaseUrl": self.metadata_url, "root": str(self.root_v1()), "workDir": str(workdir),
            "targets": [{"path": path, "prefix": page,
                         "targetBaseUrl": self.simple_url if page else self.files_url}
                        for path, page in targets],
        }
        return subprocess.run(["node", str(REPO / "tests" / "js" / "verify.js"), json.dumps(spec)],
                              capture_output=True, text=True, timeout=300)

    # -- published metadata ---------------------------------------------------------

    def published_targets(self) -> dict[str, dict]:
        """Every target listed by the bins the current timestamp's snapshot names (local reads).

        Files are replaced atomically by the publisher; a read racing a garbage collection of
        an old version is retried.
        """
        for attempt in range(5):
            try:
                return self._published_targets()
            except (FileNotFoundError, ValueError):
                if attempt == 4:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def _published_targets(self) -> dict[str, dict]:
        metadata = self.public / "metadata"
        timestamp = json.loads((metadata / "timestamp.json").read_bytes())["signed"]
        snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
        snapshot = json.loads((metadata / f"{snapshot_version}.snapshot.json").read_bytes())["signed"]
        targets: dict[str, dict] = {}
        for role, meta in snapshot["meta"].items():
            if role == "targets.json":
                continue
            signed = json.loads((metadata / f"{meta['version']}.{role}").read_bytes())["signed"]
            targets.update(signed.get("targets", {}))
        return targets

    def timestamp_version(self) -> int:
        data = json.loads((self.public / "metadata" / "timestamp.json").read_bytes())
        return data["signed"]["version"]


def python_version_of(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":  # a quick manual check of the inputs
    try:
        print(warehouse_inputs(), project_python())
    except SetupError as exc:
        sys.exit(str(exc))
