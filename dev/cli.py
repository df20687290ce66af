"""The root click group of the development host.

Subcommand modules attach themselves here: ``serve``/``worker``/``beat`` (the host),
``tuf`` (the extension's group, attached with one line as Warehouse would),
``bench`` (benchmarks) and ``soak`` (reliability harnesses).
"""

from __future__ import annotations

import importlib

import click

from warehouse_tuf.cli import tuf


class LazyConfig:
    """Configures the host app only when a command first needs it (as Warehouse's LazyConfig)."""

    def __init__(self) -> None:
        self._config = None

    def __getattr__(self, name):
        if self._config is None:
            from dev.app import configure

            self._config = configure()
        return getattr(self._config, name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def dev(ctx: click.Context) -> None:
    """The warehouse-tuf development host."""
    ctx.obj = LazyConfig()


dev.add_command(tuf)  # the one line a Warehouse maintainer adds to attach the extension's CLI

# Each module attaches its subcommands to ``dev`` when imported.
for _module in ("dev.commands", "dev.bench", "dev.bench_upload", "dev.soak"):
    importlib.import_module(_module)
