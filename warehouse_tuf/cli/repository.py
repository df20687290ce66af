"""``tuf``: the commands that run in the host, on its database and storage (``warehouse tuf ...``
in Warehouse, ``python -m dev tuf ...`` here); the offline commands join them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from warehouse_tuf.cli.common import (
    CommandGroup,
    Progress,
    UnreadableError,
    call,
    fail,
    keyids_text,
    relative,
    service,
    short_keyid,
)
from warehouse_tuf.cli.offline import ceremony, verify_repository

T = TypeVar("T")


@click.group(cls=CommandGroup)
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
        # Its own connection and transaction: the scripting request's is never committed.
        upgrade_tables(tuf_service.engine)
    click.echo("warehouse-tuf tables are up to date")


#: ``tuf status`` exit codes.
STATUS_OK, STATUS_PROBLEMS, STATUS_UNREADABLE = 0, 1, UnreadableError.exit_code


@tuf.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for monitoring.")
@click.option("--deep", is_flag=True,
              help="Check that storage holds every bin the snapshot lists, not only the root "
                   "chain, timestamp, snapshot and targets.")
@click.pass_obj
def status(config: Any, as_json: bool, deep: bool) -> None:
    """Whether the repository is healthy, at a glance; then roles, expiries and pending changes.

    The first line is ``OK`` or ``N problem(s)``. Exit status: 0 when OK, 1 with
    problems, 2 when the repository cannot be read (database or storage).
    """
    try:
        with service(config) as tuf_service:
            report = tuf_service.status(deep=deep)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise UnreadableError(f"cannot read the repository: {type(exc).__name__}: {message}") from None
    code = STATUS_PROBLEMS if report["problems"] else STATUS_OK
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        sys.exit(code)
    problems = report["problems"]
    click.echo("OK" if not problems else f"{len(problems)} problem(s)")
    for problem in problems:
        click.echo(f"  problem: {problem}")
    if not report["bootstrapped"]:
        click.echo(f"pending:     {report['pending']} change(s)")
        sys.exit(code)
    click.echo(f"metadata:    {report.get('metadata_url') or '(tuf.metadata_url is not set)'}")
    click.echo("keys:        " + ("INSECURE development keys" if report.get("development_keys")
                                   else "keys from a signing ceremony"))
    model = report["trust_model"]
    click.echo(f"trust model: {model['description']}")
    click.echo(f"  warning:   {model['warning']}")
    click.echo(f"{'role':<12} {'version':>8}  {'expires':<28} keys")
    for role in report["roles"]:
        expires = f"{relative(role['expires_in_seconds'])} ({role['expires'][:16]})"
        click.echo(f"{role['role']:<12} {role['version']:>8}  {expires:<28} "
                   f"{role['threshold']} of {len(role['keyids'])}: {keyids_text(role['keyids'])}")
    bins = report["bins"]
    earliest = f"{relative(bins['earliest_expiry_seconds'])} ({bins['earliest_expiry'][:16]})"
    click.echo(f"{'bins':<12} {bins['count']:>8}  {earliest:<28} {keyids_text(bins['keyids'])}; "
               f"earliest {bins['earliest_expiring']}, highest version {bins['max_version']}")
    oldest = (f", oldest {relative(-report['oldest_pending_seconds'])}"
              if report["pending"] else "")
    click.echo(f"pending:     {report['pending']} change(s){oldest}")
    click.echo(f"last publish: {relative(-report['last_publish_seconds'])} "
               f"({report['last_publish'][:19]})")
    click.echo(f"targets:     {report['targets']}")
    for signer in report["online_signers"]:
        keyid = short_keyid(signer["keyid"]) if signer["keyid"] else "(the one online key)"
        click.echo(f"online signer: {keyid} {signer['uri']}")
    sys.exit(code)


@tuf.command()
@click.argument("project")
@click.option("--version", "release", help="Only this release's files.")
@click.option("--verify", "check", is_flag=True,
              help="Fetch each target as a client would (ngclient, trusting the database's root) "
                   "and verify it; exit 1 if one fails.")
@click.option("--metadata-url", help="Where clients fetch the metadata  [default: tuf.metadata_url]")
@click.option("--targets-url", help="Where files are served  [default: /packages/ on the metadata host]")
@click.option("--simple-url", help="Where pages are served  [default: /simple/ on the metadata host]")
@click.pass_obj
def targets(config: Any, project: str, release: str | None, check: bool, metadata_url: str | None,
            targets_url: str | None, simple_url: str | None) -> None:
    """A project's signed targets: path, length, sha256, bin, and the bin version that holds it.

    Files come first (their path is Warehouse's ``File.path``, the target path
    a client asks for), then the project's two simple pages.
    """
    from warehouse_tuf import listing

    found: dict[str, Any] = {}

    def read(tuf_service: Any) -> list[dict[str, Any]]:
        found["root"] = listing.trusted_root(tuf_service) if check else None
        found["url"] = metadata_url or tuf_service.settings.metadata_url
        return listing.project_targets(tuf_service, project, release)

    rows = call(config, read)
    if not rows:
        fail(f"no signed targets for project {project!r}"
              + (f" version {release!r}" if release else "")
              + " (not uploaded, not yet published, or a typo)")
    for row in rows:
        version = f"v{row['bin_version']}" + (" (re-signing)" if row["resigning"] else "")
        click.echo(f"{row['path']}  {row['length']}  sha256:{row['sha256']}  {row['bin']} {version}")
    if not check:
        return
    if not found["url"]:
        fail("--verify needs the metadata URL clients use: set tuf.metadata_url or give --metadata-url")
    from warehouse_tuf.verify import derived_urls, verify_targets

    files_url, pages_url = derived_urls(found["url"], targets_url, simple_url)
    failures = verify_targets(found["url"], found["root"], [row["path"] for row in rows],
                              targets_url=files_url, simple_url=pages_url)
    for path, problem in failures.items():
        click.echo(f"problem: {path}: {problem}", err=True)
    if failures:
        fail(f"{len(failures)} of {len(rows)} target(s) failed verification as a client")
    click.echo(f"verified {len(rows)} target(s) as a client would, from {found['url']}")


@tuf.command()
@click.pass_obj
def publish(config: Any) -> None:
    """Publish every pending change now."""
    result = call(config, lambda tuf_service: tuf_service.publish())
    if result.published:
        click.echo(f"published {result.changes} change(s) in {len(result.bins)} bin(s): "
                   f"snapshot {result.snapshot_version}, timestamp {result.timestamp_version}")
    else:
        click.echo("nothing to publish")


def _with_progress(operation: Callable[[Any], T]) -> Callable[[Any], T]:
    """``operation`` with progress bars for the bins the service signs (on a terminal)."""
    def run(tuf_service: Any) -> T:
        with Progress() as progress:
            tuf_service.progress = progress
            return operation(tuf_service)
    return run


@tuf.command()
@click.pass_obj
def refresh(config: Any) -> None:
    """Re-sign the online roles that expire within the refresh window."""
    result = call(config, _with_progress(lambda tuf_service: tuf_service.refresh()))
    if result.published:
        click.echo(f"re-signed {len(result.bins)} bin(s): snapshot {result.snapshot_version}, "
                   f"timestamp {result.timestamp_version}")
    else:
        click.echo("nothing is due")


@tuf.command("resign-bins")
@click.option("--bin", "indexes", multiple=True, type=click.IntRange(0), metavar="INDEX",
              help="Re-sign only this bin (by index); repeat. Default: every bin.")
@click.pass_obj
def resign_bins(config: Any, indexes: tuple[int, ...]) -> None:
    """Re-sign bins (every bin by default) under new versions, then snapshot and timestamp."""
    result = call(config, _with_progress(
        lambda tuf_service: tuf_service.resign_bins(list(indexes) or None)))
    click.echo(f"re-signed {len(result.bins)} bin(s): snapshot {result.snapshot_version}, "
               f"timestamp {result.timestamp_version}")


@tuf.command()
@click.pass_obj
def recover(config: Any) -> None:
    """After a database restore or a storage loss: resume from the published versions and
    re-publish what storage lacks.

    Every root version and the current targets are written back from the
    database; when storage lost online roles, every bin, the snapshot and the
    timestamp are re-signed under new versions at once. After a database
    restore, changes committed after the backup are not re-queued; record them
    again (e.g. by backfill), then publish.
    """
    result = call(config, _with_progress(lambda tuf_service: tuf_service.recover()))
    for name in result.restored:
        click.echo(f"restored {name}")
    for name in result.unrecoverable:
        click.echo(f"problem: the database has no bytes for {name}: copy it back from the "
                   "signed ceremony payload", err=True)
    if result.timestamp_version is None:
        click.echo("storage had no timestamp.json")
    else:
        click.echo(f"storage publishes timestamp {result.timestamp_version}, snapshot "
                   f"{result.snapshot_version}")
    if result.publish is not None:
        click.echo(f"re-signed {len(result.publish.bins)} bin(s) under new versions: snapshot "
                   f"{result.publish.snapshot_version}, timestamp {result.publish.timestamp_version}")
    else:
        click.echo(f"the next publish re-signs {result.roles} role(s) under newer versions. After a "
                   "database restore, record changes made after the backup again, then publish.")
    if result.unrecoverable:
        sys.exit(1)


@tuf.command("bootstrap-dev")
@click.pass_obj
def bootstrap_dev(config: Any) -> None:
    """Bootstrap with generated development keys (refused in production)."""
    result = call(config, lambda tuf_service: tuf_service.bootstrap_development())
    click.echo(f"bootstrapped {len(result.bins)} bins with INSECURE development keys")


@tuf.command()
@click.option("--batch-files", default=10_000, show_default=True, type=click.IntRange(1),
              help="Host files added per transaction.")
@click.option("--batch-bins", default=4096, show_default=True, type=click.IntRange(1),
              help="Bins re-signed per publish (fanned out to the workers in distributed mode).")
@click.pass_obj
def backfill(config: Any, batch_files: int, batch_bins: int) -> None:
    """Sign every file and simple page the host already has.

    Resumable: after an interruption, run it again; it continues where it stopped.
    """
    with Progress() as progress:
        result = call(config, lambda tuf_service: tuf_service.backfill(
            batch_files=batch_files, batch_bins=batch_bins, progress=progress))
    for reason in result.skipped:
        click.echo(f"skipped: {reason}", err=True)
    stages = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in result.stages.items())
    click.echo(f"backfilled {result.files} file(s) and {result.pages} project page(s); "
               f"re-signed {result.bins} bin(s) in {result.seconds:.1f}s ({stages})"
               + (f"; skipped {len(result.skipped)} invalid file(s)" if result.skipped else ""))


# -- putting a signed payload online -------------------------------------------------


def _signed_payload(payload_file: str) -> Any:
    from warehouse_tuf import ceremony as ceremonylib

    payload = ceremonylib.Payload.from_file(payload_file)
    problems = payload.problems()
    if problems:
        raise ceremonylib.CeremonyError(problems[0])
    return payload


@tuf.command()
@click.argument("payload_file", type=click.Path(dir_okay=False))
@click.pass_obj
def bootstrap(config: Any, payload_file: str) -> None:
    """Install a signed ceremony payload (root v1, targets v1) and publish every bin."""
    from warehouse_tuf.ceremony import CeremonyError

    payload = _signed_payload(payload_file)
    if payload.trusted_root is not None:
        raise CeremonyError("this payload updates an installed root: use 'tuf install'")
    with service(config) as tuf_service:
        result = tuf_service.bootstrap(payload.role_bytes("root"), payload.role_bytes("targets"))
    click.echo(f"bootstrapped: root v1, targets v1, {len(result.bins)} bins, "
               f"snapshot {result.snapshot_version}, timestamp {result.timestamp_version}")


@tuf.command()
@click.argument("payload_file", type=click.Path(dir_okay=False))
@click.option("--online-signer", multiple=True, metavar="KEYID=URI",
              help="Online signers to use (default: tuf.online_signers); a key rotation needs "
                   "the old and the new key.")
@click.option("--without-old-key", is_flag=True,
              help="The old online key is lost or compromised: sign with the new key only "
                   "(clients refreshing during the switch are refused once, then succeed).")
@click.pass_obj
def install(config: Any, payload_file: str, online_signer: tuple[str, ...], without_old_key: bool) -> None:
    """Install a signed next root and/or targets (rotation, renewal)."""
    from warehouse_tuf.ceremony import CeremonyError

    payload = _signed_payload(payload_file)
    if payload.trusted_root is None:
        raise CeremonyError("this payload is a bootstrap payload: use 'tuf bootstrap'")
    with service(config) as tuf_service, Progress() as progress:
        tuf_service.progress = progress
        result = tuf_service.install(
            payload.role_bytes("root"), payload.role_bytes("targets"), online_signer or None,
            without_old_key=without_old_key or payload.old_keys_unavailable,
        )
    click.echo(f"installed: root v{result.root_version}, targets v{result.targets_version}"
               + (", online key rotated" if result.online_key_rotated else "")
               + f"; timestamp {result.timestamp_version}")


@tuf.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.pass_obj
def gc(config: Any, dry_run: bool) -> None:
    """Delete metadata versions outside the retention window (tuf.retention); never a root."""
    result = call(config, lambda tuf_service: tuf_service.gc(dry_run=dry_run))
    for name in result.deleted:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {name}")
    click.echo(f"{len(result.deleted)} version(s) {'to delete' if dry_run else 'deleted'}, "
               f"{result.kept} kept (roots are always kept)")


tuf.add_command(ceremony)
tuf.add_command(verify_repository)
