"""``warehouse-tuf``: the ceremony in a fresh venv holding only the package and what it imports.

A key holder on an offline machine installs the package and nothing else: no
database, no Warehouse, no Pyramid, no settings. This venv gets the package
(``pip install --no-deps`` of this checkout) and only the libraries the
ceremony imports, from the wheels pip already has (no dev extras).
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from dev.testing.devhost import ROOT
from warehouse_tuf import ceremony

pytestmark = pytest.mark.e2e

#: What the ceremony imports: click, python-tuf, securesystemslib (+ cryptography), SQLAlchemy (models).
CEREMONY_REQUIREMENTS = ["click>=8.1", "tuf>=7.0", "securesystemslib[crypto]>=1.1", "SQLAlchemy>=2.0"]


@pytest.fixture(scope="module")
def offline_venv(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("keyholder") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for args in (CEREMONY_REQUIREMENTS, ["--no-deps", str(ROOT)]):
        result = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600, cwd=where.parent)
        assert result.returncode == 0, result.stdout + result.stderr
    return where


def keyholder(venv_dir: Path, *args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    """``warehouse-tuf ARGS`` as the key holder types it, in a shell with nothing of this project set."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TUF_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv_dir / 'bin'}:{env.get('PATH', '')}"
    result = subprocess.run(["warehouse-tuf", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    return result


def test_the_ceremony_runs_in_a_venv_with_only_the_package(offline_venv, tmp_path):
    python = offline_venv / "bin" / "python"
    absent = subprocess.run([str(python), "-c", "import pyramid"], capture_output=True, text=True)
    assert absent.returncode == 1 and "No module named 'pyramid'" in absent.stderr
    assert "ceremony" in keyholder(offline_venv, "--help", cwd=tmp_path).stdout

    ids = {}
    for name in ("root", "targets", "online"):
        made = keyholder(offline_venv, "ceremony", "generate-key", "-o", f"{name}.pem", cwd=tmp_path).stdout
        assert (tmp_path / f"{name}.pem").stat().st_mode & 0o777 == 0o600
        ids[name] = keyholder(offline_venv, "key-id", f"{name}.pub.pem", cwd=tmp_path).stdout.split()[0]
        assert f"key id:      {ids[name]}  (" in made and len(ids[name]) == 12
    again = keyholder(offline_venv, "ceremony", "generate-key", "-o", "root.pem", cwd=tmp_path, ok=False)
    assert again.stderr == f"error: {tmp_path / 'root.pem'} exists: choose another file (a key is never overwritten)\n"

    keyholder(offline_venv, "ceremony", "init", "--root-key", "root.pub.pem", "--root-threshold", "1",
              "--targets-key", "targets.pub.pem", "--targets-threshold", "1", "--online-key", "online.pub.pem",
              "--bin-count", "16", "-o", "payload.json", cwd=tmp_path)
    unsigned = keyholder(offline_venv, "ceremony", "verify", "payload.json", cwd=tmp_path, ok=False).stdout
    read_aloud = unsigned.split("read aloud): ")[1].split()[:4]
    for name in ("root", "targets"):
        signed = keyholder(offline_venv, "ceremony", "sign", "payload.json", "--key", f"{name}.pem",
                           "--expect-digest", " ".join(read_aloud), cwd=tmp_path).stdout
        assert f"signed {name} with key {ids[name]}\n" in signed
    assert keyholder(offline_venv, "ceremony", "verify", "payload.json", cwd=tmp_path).stdout.endswith(
        "ready to install\n")
    assert ceremony.Payload.from_file(tmp_path / "payload.json").problems() == []
