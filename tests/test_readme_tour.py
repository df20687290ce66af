"""The README's five-minute tour, run exactly as shown, from a fresh copy, in fresh shells.

The copy is a ``git clone`` of this repository with the working tree's
version of every tracked file laid over it (what a clone of the current state
holds), at ``~/warehouse-tuf`` of a home directory of its own, as the README
names it. The first block (``make serve``) runs in the clone and builds its
``.venv`` from nothing (pip's wheel cache is shared, no dev venv is reused);
the second runs in another shell, outside the clone, as the README says.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from dev.testing.devhost import ROOT, HTTPClient, free_port, http_get, wait_until

pytestmark = pytest.mark.e2e

TOUR_BLOCK = re.compile(r"<!-- tour: (?P<name>[\w-]+) -->\n```sh\n(?P<body>.*?)```", re.S)
WHEEL_LINE = re.compile(r"^(?P<path>[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/tuf_demo-1\.0-py3-none-any\.whl)  \d+  "
                        r"sha256:[0-9a-f]{64}  bins-[0-9a-f]+ v\d+$", re.M)


def tour_blocks(readme: str) -> dict[str, str]:
    return {match["name"]: match["body"] for match in TOUR_BLOCK.finditer(readme)}


def fresh_copy(destination: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(destination)], check=True)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def fresh_shell_env(home: Path, port: int) -> dict[str, str]:
    """What a new login on this machine has: its PATH (without any venv), no project variables."""
    keep = {"PATH", "LANG", "LC_ALL", "PYENV_ROOT", "TMPDIR"} | {k for k in os.environ if k.startswith("PIP_")}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["PATH"] = ":".join(part for part in env["PATH"].split(":") if "/.venv/" not in part)
    env.update(HOME=str(home), PORT=str(port),
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")))
    return env


def shell(script: str, *, cwd: Path, env: dict[str, str], **kwargs):
    return ["bash", "--noprofile", "--norc", "-e", "-c", script], dict(cwd=cwd, env=env, **kwargs)


def test_the_readme_tour_works_as_shown_in_fresh_shells(tmp_path):
    blocks = tour_blocks((ROOT / "README.md").read_text())
    assert list(blocks) == ["serve", "client"], blocks
    home = tmp_path / "home"
    home.mkdir()
    fresh_copy(home / "warehouse-tuf")
    port = free_port()
    env = fresh_shell_env(home, port)
    log = tmp_path / "serve.log"

    args, options = shell(blocks["serve"], cwd=home, env=env)
    with log.open("wb") as output:
        server = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **options)
    try:
        def answers() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"make serve exited {server.returncode}: {log.read_text()[-3000:]}")
            try:
                return http_get(f"http://127.0.0.1:{port}/simple/")[0] == 200
            except OSError:
                return False

        wait_until(answers, 900, "make serve in the fresh copy to answer (it builds .venv first)")
        args, options = shell(blocks["client"], cwd=home, env=env)
        tour = subprocess.run(args, capture_output=True, text=True, timeout=600, **options)
        assert tour.returncode == 0, tour.stdout + tour.stderr
        wheel = WHEEL_LINE.search(tour.stdout)
        assert wheel, tour.stdout
        # After the tour's delete and publish, a client finds the wheel no longer signed.
        assert HTTPClient(f"http://127.0.0.1:{port}").download(wheel["path"]) is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # make and the host it started: the session begun above
        server.wait(timeout=60)

    out = tour.stdout
    assert "verified 4 target(s) as a client would, from " f"http://127.0.0.1:{port}/tuf/metadata/" in out
    assert "\nOK\n" in out and "keys:        INSECURE development keys" in out, out
    assert "Successfully installed tuf-demo-1.0" in out, out
    assert (home / "warehouse-tuf" / ".venv").is_dir()
    served = log.read_text()
    assert "tuf kind=publish " in served and "Task queue depth" not in served, served[-3000:]
    assert f"status:   {home / 'warehouse-tuf' / '.venv'}/bin/python -m dev tuf status" in served
