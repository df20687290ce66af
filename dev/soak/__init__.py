"""``python -m dev soak <scenario>``: reliability harnesses that put figures on the invariants.

Each scenario returns a :class:`~dev.soak.harness.Report`; ``--json`` prints it
as the last line (``trials`` or ``uploads``, ``failures``, ``discrepancies``).
The short versions run in the default test suite (tests/test_soak_short.py).
"""

from __future__ import annotations

import click

from dev.cli import dev


@dev.group()
def soak() -> None:
    """Reliability harnesses: crash, concurrency, outage, restore, fuzz."""


def json_option(function):
    return click.option("--json", "as_json", is_flag=True,
                        help="End with one JSON line of figures.")(function)


# The scenarios attach their commands to the group above.
from dev.soak import concurrency, crash, fuzz, outage, restore  # noqa: E402,F401
