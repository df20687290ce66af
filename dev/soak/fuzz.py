"""Hostile input: the properties of dev/testing/fuzz.py, with many more examples each.

Every property runs ``--examples`` examples; ``trials`` counts the examples
actually run (hypothesis stops early when a strategy has no more to give),
``discrepancies`` the properties that found a counterexample.
"""

from __future__ import annotations

import time
import traceback

import click
from hypothesis import settings

from dev.soak import json_option, soak
from dev.soak.harness import Report


def run_fuzz(examples: int, seed: int | None = None) -> Report:
    from dev.testing.fuzz import PROPERTIES

    report = Report("fuzz", details={"examples_per_property": examples})
    started = time.monotonic()
    counts = {}
    for name, test in PROPERTIES.items():
        inner = test.hypothesis.inner_test
        calls = [0]

        def counted(*args, _inner=inner, _calls=calls, **kwargs):
            _calls[0] += 1
            return _inner(*args, **kwargs)

        configured = test._hypothesis_internal_use_settings
        test.hypothesis.inner_test = counted
        test._hypothesis_internal_use_settings = settings(
            configured, max_examples=examples, database=None, derandomize=seed is not None
        )
        try:
            test()
        except Exception as exc:
            for found in getattr(exc, "exceptions", [exc]):  # hypothesis groups distinct failures
                where = traceback.extract_tb(found.__traceback__)[-1]
                report.discrepancy(f"{name}: {type(found).__name__}: {str(found)[:200]} "
                                   f"(at {where.filename}:{where.lineno})")
        finally:
            test.hypothesis.inner_test = inner
            test._hypothesis_internal_use_settings = configured
        counts[name] = calls[0]
        report.checks += 1
    report.trials = sum(counts.values())
    report.details["examples"] = counts
    report.seconds = round(time.monotonic() - started, 1)
    return report


@soak.command()
@click.option("--examples", default=10_000, show_default=True, help="Examples per property.")
@click.option("--seed", type=int, help="Derandomize (any value: hypothesis' fixed seed).")
@json_option
def fuzz(examples: int, seed: int | None, as_json: bool) -> None:
    """Fuzz target paths, storage names, settings, ceremony payloads and host access (hypothesis)."""
    run_fuzz(examples, seed).emit(as_json)
