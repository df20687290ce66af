"""The ``tuf`` click group: ``warehouse tuf ...`` in Warehouse, ``python -m dev tuf ...`` here.

Attach it to a host's root group with one line: ``warehouse.add_command(tuf)``.
The root group's context object is the host's Pyramid Configurator (Warehouse's
``LazyConfig``); commands build a scripting request from its registry.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.services import RepositoryError
from warehouse_tuf.settings import ConfigurationError


@contextlib.contextmanager
def service(config: Any) -> Iterator[ITUFService]:
    """The TUF service of a scripting request on the host's registry."""
    from pyramid.scripting import prepare

    env = prepare(registry=config.registry)
    try:
        yield env["request"].find_service(ITUFService, context=None)
    finally:
        env["closer"]()


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@click.group()
def tuf() -> None:
    """Manage the PEP 458 TUF repository."""


@tuf.group()
def db() -> None:
    """The extension's database tables."""


@db.command()
@click.pass_obj
def upgrade(config: Any) -> None:
    """Apply the extension's migrations (own alembic version table)."""
    from warehouse_tuf.migrations import upgrade as upgrade_tables

    with service(config) as tuf_service:
        upgrade_tables(tuf_service.db.get_bind())
    click.echo("warehouse-tuf tables are up to date")


@tuf.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for monitoring.")
@click.pass_obj
def status(config: Any, as_json: bool) -> None:
    """Roles, versions, expiries, pending changes and problems."""
    with service(config) as tuf_service:
        report = tuf_service.status()
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    if not report["bootstrapped"]:
        click.echo(f"not bootstrapped; {report['pending']} pending change(s)")
        return
    click.echo(f"{'role':<12} {'version':>8}  expires")
    for role in report["roles"]:
        click.echo(f"{role['role']:<12} {role['version']:>8}  {role['expires']}")
    bins = report["bins"]
    click.echo(f"{'bins':<12} {bins['count']:>8}  earliest {bins['earliest_expiry']} "
               f"({bins['earliest_expiring']}), highest version {bins['max_version']}")
    click.echo(f"targets: {report['targets']}  pending: {report['pending']}  "
               f"last publish: {report['last_publish']}")
    for problem in report["problems"]:
        click.echo(f"problem: {problem}")


@tuf.command()
@click.pass_obj
def publish(config: Any) -> None:
    """Publish every pending change now."""
    try:
        with service(config) as tuf_service:
            result = tuf_service.publish()
    except (RepositoryError, ConfigurationError) as exc:
        _fail(exc)
    if result.published:
        click.echo(f"published {result.changes} change(s) in {len(result.bins)} bin(s): "
                   f"snapshot {result.snapshot_version}, timestamp {result.timestamp_version}")
    else:
        click.echo("nothing to publish")


@tuf.command()
@click.pass_obj
def refresh(config: Any) -> None:
    """Re-sign the online roles that expire within the refresh window."""
    try:
        with service(config) as tuf_service:
            result = tuf_service.refresh()
    except (RepositoryError, ConfigurationError) as exc:
        _fail(exc)
    if result.published:
        click.echo(f"re-signed {len(result.bins)} bin(s): snapshot {result.snapshot_version}, "
                   f"timestamp {result.timestamp_version}")
    else:
        click.echo("nothing is due")


@tuf.command("bootstrap-dev")
@click.pass_obj
def bootstrap_dev(config: Any) -> None:
    """Bootstrap with generated development keys (refused in production)."""
    try:
        with service(config) as tuf_service:
            result = tuf_service.bootstrap_development()
    except (RepositoryError, ConfigurationError) as exc:
        _fail(exc)
    click.echo(f"bootstrapped {len(result.bins)} bins with INSECURE development keys")
