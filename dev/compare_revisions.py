"""Run one ``python -m dev bench`` scenario on two revisions, alternately, in one session.

A figure measured on a busy 2-core machine drifts with the load; alternating the two
revisions run by run exposes both to the same drift, so the ratio of their medians holds
where the absolute seconds do not. Each revision runs from its own temporary ``git worktree``
(with this checkout's virtualenv), so the working tree is never touched.

    .venv/bin/python dev/compare_revisions.py --before 31e3b86~1 --after HEAD --rounds 5 \\
        --figure wall_s -- refresh --targets 100000

prints every run's figure, then the median and best of each revision and the ratios
after/before.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPOSITORY = Path(__file__).resolve().parent.parent


def _checkout(revision: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "--quiet", str(into), revision],
                   check=True)
    return into


def _run(tree: Path, bench_args: tuple[str, ...], figure: str) -> float:
    """One bench run from ``tree`` (its own ``dev`` and ``warehouse_tuf`` first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run([sys.executable, "-m", "dev", "bench", *bench_args, "--json"], cwd=tree, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"bench failed in {tree}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if figure not in figures:
        raise click.ClickException(f"the bench printed no {figure!r}; it printed {sorted(figures)}")
    return float(figures[figure])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--before", required=True, help="The revision measured first in each round.")
@click.option("--after", default="HEAD", show_default=True, help="The revision compared with it.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1))
@click.option("--figure", default="wall_s", show_default=True, help="The key of the bench's JSON to compare.")
@click.option("--settle", default=2.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait before each run, after flushing what the last run left to write.")
@click.argument("bench_args", nargs=-1, required=True)
def compare(before: str, after: str, rounds: int, figure: str, settle: float, bench_args: tuple[str, ...]) -> None:
    """Alternate BENCH_ARGS (a ``python -m dev bench`` command) on two revisions."""
    with tempfile.TemporaryDirectory(prefix="compare-") as scratch:
        trees = {"before": _checkout(before, Path(scratch, "before")),
                 "after": _checkout(after, Path(scratch, "after"))}
        try:
            values: dict[str, list[float]] = {"before": [], "after": []}
            for round_number in range(1, rounds + 1):
                for label, tree in trees.items():
                    # The last run's files are still being written back: without this, that
                    # writeback lands on whichever revision runs next.
                    os.sync()
                    time.sleep(settle)
                    values[label].append(_run(tree, bench_args, figure))
                    click.echo(f"round {round_number} {label:>6}: {figure}={values[label][-1]}  "
                               f"(load {os.getloadavg()[0]:.2f})")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(tree)],
                               check=False)
    medians = {label: statistics.median(runs) for label, runs in values.items()}
    bests = {label: min(runs) for label, runs in values.items()}
    for label in values:
        click.echo(f"{label:>6} ({before if label == 'before' else after}): median {medians[label]}, "
                   f"best {bests[label]}")
    click.echo(f"after/before: median {medians['after'] / medians['before']:.3f}, "
               f"best {bests['after'] / bests['before']:.3f}")


if __name__ == "__main__":
    compare()
