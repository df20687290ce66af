"""Start-up time of the command lines: the median of several runs of each, side by side.

Run it with ``make bench-cli`` (or ``.venv/bin/python dev/bench_cli.py [--runs N]``).
The goal: ``warehouse-tuf --help`` answers in under 0.5 s (issue 12). Figures
depend on the machine's load: compare the rows of one run, not runs of
different days (docs/performance.md records them with the load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

COMMANDS = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "warehouse-tuf --help": [str(BIN / "warehouse-tuf"), "--help"],
    "warehouse-tuf ceremony sign --help": [str(BIN / "warehouse-tuf"), "ceremony", "sign", "--help"],
    "python -m dev --help": [sys.executable, "-m", "dev", "--help"],
    "python -m dev tuf --help": [sys.executable, "-m", "dev", "tuf", "--help"],
}


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "0"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the page cache and the bytecode caches
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    load = os.getloadavg()
    print(f"median start-up of {args.runs} runs each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for label, command in COMMANDS.items():
        print(f"{median_seconds(command, args.runs):7.3f} s  {label}")


if __name__ == "__main__":
    main()
