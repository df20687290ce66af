"""The root click group of the development host.

Subcommands live in modules imported only when their command runs:
``serve``/``worker``/``beat`` (:mod:`dev.commands`), ``tuf`` (the extension's
group, attached with one line as Warehouse would), ``bench`` (benchmarks) and
``soak`` (reliability harnesses, which reuse the test helpers). ``--help``
and ``tuf ...`` therefore load neither the benchmarks nor the tests.
"""

from __future__ import annotations

import importlib
import os

import click

from warehouse_tuf.cli import tuf


class LazyConfig:
    """Configures the host app only when a command first needs it (as Warehouse's LazyConfig)."""

    def __init__(self) -> None:
        self._config = None
        self._settings: dict = {}

    def default(self, key: str, value: str, envvar: str) -> None:
        """A command's own default for a setting, unless ``envvar`` is set; before first use only."""
        if self._config is None and envvar not in os.environ:
            self._settings[key] = value

    def __getattr__(self, name):
        if self._config is None:
            from dev.app import configure

            self._config = configure(self._settings)
        return getattr(self._config, name)


#: command name -> (modules that define it, one-line help shown by ``--help``).
LAZY_COMMANDS = {
    "serve": (("dev.commands",), "Serve the host; create its tables and bootstrap TUF on first run."),
    "worker": (("dev.commands",), "A Celery worker (distributed mode)."),
    "beat": (("dev.commands",), "Celery beat (distributed mode): the periodic publish and refresh."),
    "demo-dist": (("dev.demo",), "Build a tiny project's sdist and wheel, to upload."),
    "bench": (("dev.bench", "dev.bench_upload", "dev.bench_storage"),
              "Benchmarks at PyPI scale (docs/performance.md)."),
    "soak": (("dev.soak",), "Reliability harnesses (docs/reliability.md)."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when first used (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in LAZY_COMMANDS:
            for module in LAZY_COMMANDS[name][0]:
                importlib.import_module(module)  # attaches its commands to ``dev``
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.commands[name].get_short_help_str(45) if name in self.commands
                 else LAZY_COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def dev(ctx: click.Context) -> None:
    """The warehouse-tuf development host."""
    ctx.obj = LazyConfig()


dev.add_command(tuf)  # the one line a Warehouse maintainer adds to attach the extension's CLI
