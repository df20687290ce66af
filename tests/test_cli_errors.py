"""Every command reports the extension's errors (repository, settings, signer, ceremony, storage)
as one line, ``error: ...``, exit status 1, never a traceback, and changes nothing.

Each case is a representative refusal of one command; ``tuf status`` and ``verify`` keep their
documented exit status 2 when nothing can be read.
"""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, func, select

from dev.cli import dev
from tests.conftest import make_configurator
from warehouse_tuf.cli import main, tuf


def state(engine, folder) -> tuple:
    """Every row count of every table, and every file (path, sha256) under ``folder``."""
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        rows = {name: conn.scalar(select(func.count()).select_from(table)) for name, table in tables.tables.items()}
    files = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith("index.sqlite")}
    return rows, files


def assert_one_line_error(result, message: str, exit_code: int = 1) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: ") and message in result.output, result.output


HOST_CASES = [
    (("publish",), {}, "not bootstrapped"),
    (("refresh",), {}, "not bootstrapped"),
    (("resign-bins",), {}, "not bootstrapped"),
    (("recover",), {}, "not bootstrapped"),
    (("backfill",), {}, "not bootstrapped"),
    (("gc",), {}, "storage holds no published repository"),
    (("targets", "demo", "--verify"), {}, "no signed targets for project 'demo'"),
    (("bootstrap", "{tmp}/missing.json"), {}, "cannot read payload"),
    (("install", "{tmp}/missing.json"), {}, "cannot read payload"),
    (("bootstrap-dev",), {"tuf.env": "production"}, "development keys are refused in production"),
]


@pytest.mark.parametrize("args, settings, message", HOST_CASES, ids=[" ".join(c[0]) for c in HOST_CASES])
def test_a_host_command_refuses_with_one_line_and_changes_nothing(engine, tmp_path, args, settings, message):
    config = make_configurator(engine, tmp_path, **settings)
    before = state(engine, tmp_path)
    result = CliRunner().invoke(tuf, [a.format(tmp=tmp_path) for a in args], obj=config)
    assert_one_line_error(result, message)
    assert state(engine, tmp_path) == before


@pytest.fixture
def key_files(tmp_path):
    """A key holder's folder: k.pem and k.pub.pem."""
    result = CliRunner().invoke(main, ["ceremony", "generate-key", "-o", str(tmp_path / "k.pem")])
    assert result.exit_code == 0, result.output
    return tmp_path


CEREMONY_CASES = [
    (("ceremony", "generate-key", "-o", "k.pem"), "k.pem exists"),
    (("ceremony", "init", "--root-key", "k.pub.pem", "--root-threshold", "1", "--targets-key", "k.pub.pem",
      "--targets-threshold", "1", "--online-key", "k.pub.pem", "--bin-count", "3", "-o", "p.json"),
     "bin count 3 must be a power of two"),
    (("ceremony", "prepare", "--root", "k.pub.pem", "--targets", "k.pub.pem", "-o", "n.json"),
     "not valid TUF metadata"),
    (("ceremony", "key-id", "k.pem"), "holds a private key: give the public key only"),
    (("ceremony", "sign", "missing.json", "--key", "k.pem"), "cannot read payload missing.json"),
    (("ceremony", "verify", "k.pub.pem"), "not valid JSON"),
]


@pytest.mark.parametrize("args, message", CEREMONY_CASES, ids=[" ".join(c[0][:2]) for c in CEREMONY_CASES])
def test_a_ceremony_command_refuses_with_one_line_and_changes_nothing(key_files, monkeypatch, args, message):
    monkeypatch.chdir(key_files)
    before = sorted((p.name, p.read_bytes()) for p in key_files.iterdir())
    assert_one_line_error(CliRunner().invoke(main, list(args)), message)
    assert sorted((p.name, p.read_bytes()) for p in key_files.iterdir()) == before


def test_verify_of_an_unreachable_server_is_one_line_with_status_2():
    result = CliRunner().invoke(main, ["verify", "http://127.0.0.1:9/metadata/"])
    assert_one_line_error(result, "cannot reach http://127.0.0.1:9", exit_code=2)


def test_a_wrong_setting_in_the_environment_is_one_line_on_the_development_host(tmp_path, monkeypatch):
    """The host configures itself when a command first needs it (Warehouse's LazyConfig): a bad
    setting surfaces inside the command, and is reported like the command's own errors."""
    monkeypatch.setenv("TUF_DEV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TUF_BIN_COUNT", "3")
    result = CliRunner().invoke(dev, ["tuf", "db", "upgrade"])
    assert_one_line_error(result, "tuf.bin_count (TUF_BIN_COUNT) = '3': bin count 3 must be a power of two")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.json"))
