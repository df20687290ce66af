"""The development host's start-up errors are one line each, and leave the data directory alone."""

from __future__ import annotations

import socket

import pytest

from dev.testing.devhost import dev_command

pytestmark = pytest.mark.e2e  # starts the development host as a process


def _one_line(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_port_in_use_is_one_line_and_bootstraps_nothing(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dev_command("serve", "--port", str(port), env={"TUF_DEV_DATA": str(data)})
    assert _one_line(result) == (
        f"Error: port {port} on 127.0.0.1 is in use (another 'make serve'?): stop it, or choose another "
        "port with PORT=8081 make serve")
    assert not (data / "index.sqlite").exists() and not (data / "tuf-metadata").exists()


def test_a_corrupt_sqlite_database_is_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    database = data / "index.sqlite"
    database.write_bytes(b"this is not an SQLite database, it was overwritten\n" * 100)
    result = dev_command("serve", "--port", "0", env={"TUF_DEV_DATA": str(data)})
    assert _one_line(result) == (
        f"Error: the database {database} cannot be read (file is not a database): it is damaged or not "
        f"SQLite. Move it away, or delete {data} to start afresh")
    assert database.read_bytes().startswith(b"this is not an SQLite database")
    status = dev_command("tuf", "status", env={"TUF_DEV_DATA": str(data)})
    assert status.returncode == 2 and status.stderr.startswith("error: cannot read the repository: ")
    assert len(status.stderr.strip().splitlines()) == 1
