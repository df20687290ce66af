"""Progress bars for bin signing (refresh, resign-bins, recover, install): on a terminal, never in a pipe."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys

import pytest

from dev.testing.devhost import ROOT, dev_config
from dev.testing.tufclient import Client

BINS = 256


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``python -m dev ARGS`` with stderr on a pseudo-terminal; (exit status, stdout, terminal output)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "dev", *args], cwd=ROOT, env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout = process.stdout.read()
    process.wait(timeout=120)
    os.close(controller)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.fixture
def host(tmp_path):
    data = tmp_path / "data"
    config = dev_config(data, f"sqlite:///{data / 'index.sqlite'}", **{"tuf.bin_count": BINS})
    env = {"TUF_DEV_DATA": str(data), "TUF_BIN_COUNT": str(BINS)}
    return config, data, env


@pytest.mark.slow
def test_resign_bins_and_recover_draw_a_bar_on_a_terminal(host):
    config, data, env = host
    code, stdout, terminal = on_terminal(["tuf", "resign-bins"], env)
    assert code == 0 and stdout.startswith(f"re-signed {BINS} bin(s)"), (stdout, terminal)
    assert "bins" in terminal and "100%" in terminal, terminal
    shutil.rmtree(data / "tuf-metadata")
    code, stdout, terminal = on_terminal(["tuf", "recover"], env)
    assert code == 0 and f"re-signed {BINS} bin(s) under new versions" in stdout, (stdout, terminal)
    assert "100%" in terminal, terminal
    assert Client(data / "tuf-metadata").refresh()  # a client refreshes from what recover wrote


@pytest.mark.slow
def test_refresh_draws_a_bar_and_a_pipe_gets_none(host):
    config, data, env = host
    due = {**env, "TUF_REFRESH_WINDOW": "3d", "TUF_EXPIRY_BINS": "5d", "TUF_EXPIRY_SNAPSHOT": "5d",
           "TUF_EXPIRY_TIMESTAMP": "5d"}  # every bin (1 day) expires within the window
    code, stdout, terminal = on_terminal(["tuf", "refresh"], due)
    assert code == 0 and stdout.startswith(f"re-signed {BINS} bin(s)"), (stdout, terminal)
    assert "100%" in terminal, terminal
    assert Client(data / "tuf-metadata").refresh()
    piped = subprocess.run([sys.executable, "-m", "dev", "tuf", "resign-bins"], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.startswith(f"re-signed {BINS}")
