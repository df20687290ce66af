"""The ``tuf`` click group: ``warehouse tuf ...`` in Warehouse, ``python -m dev tuf ...`` here.

Attach it to a host's root group with one line: ``warehouse.add_command(tuf)``.
The root group's context object is the host's Pyramid Configurator (Warehouse's
``LazyConfig``); commands build a scripting request from its registry.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from tuf.api.metadata import Metadata

from warehouse_tuf import ceremony as ceremonylib
from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.models import utcnow
from warehouse_tuf.services import RepositoryError
from warehouse_tuf.settings import ConfigurationError, parse_duration
from warehouse_tuf.signing import SigningError

T = TypeVar("T")


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


def _call(config: Any, operation: Callable[[ITUFService], T]) -> T:
    """``operation(service)``; a repository, setting or signer problem is a one-line error."""
    try:
        with service(config) as tuf_service:
            return operation(tuf_service)
    except (RepositoryError, ConfigurationError, SigningError) as exc:
        _fail(exc)


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
        # Its own connection and transaction: the scripting request's is never committed.
        upgrade_tables(tuf_service.engine)
    click.echo("warehouse-tuf tables are up to date")


@tuf.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for monitoring.")
@click.option("--deep", is_flag=True,
              help="Check that storage holds every bin the snapshot lists, not only the root "
                   "chain, timestamp, snapshot and targets.")
@click.pass_obj
def status(config: Any, as_json: bool, deep: bool) -> None:
    """Roles, versions, expiries, pending changes, what storage lacks, and problems."""
    with service(config) as tuf_service:
        report = tuf_service.status(deep=deep)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    if not report["bootstrapped"]:
        click.echo(f"not bootstrapped; {report['pending']} pending change(s)")
        return
    click.echo(f"{'role':<12} {'version':>8}  {'expires':<26} keys")
    for role in report["roles"]:
        keys = ", ".join(keyid[:8] for keyid in role["keyids"])
        click.echo(f"{role['role']:<12} {role['version']:>8}  {role['expires']:<26} "
                   f"{role['threshold']} of {len(role['keyids'])}: {keys}")
    bins = report["bins"]
    click.echo(f"{'bins':<12} {bins['count']:>8}  earliest {bins['earliest_expiry']} "
               f"({bins['earliest_expiring']}), highest version {bins['max_version']}")
    click.echo(f"targets: {report['targets']}  pending: {report['pending']}  "
               f"last publish: {report['last_publish']}")
    for signer in report["online_signers"]:
        click.echo(f"online signer: {signer['keyid'] or '(the one online key)'} {signer['uri']}")
    for problem in report["problems"]:
        click.echo(f"problem: {problem}")


@tuf.command()
@click.pass_obj
def publish(config: Any) -> None:
    """Publish every pending change now."""
    result = _call(config, lambda tuf_service: tuf_service.publish())
    if result.published:
        click.echo(f"published {result.changes} change(s) in {len(result.bins)} bin(s): "
                   f"snapshot {result.snapshot_version}, timestamp {result.timestamp_version}")
    else:
        click.echo("nothing to publish")


@tuf.command()
@click.pass_obj
def refresh(config: Any) -> None:
    """Re-sign the online roles that expire within the refresh window."""
    result = _call(config, lambda tuf_service: tuf_service.refresh())
    if result.published:
        click.echo(f"re-signed {len(result.bins)} bin(s): snapshot {result.snapshot_version}, "
                   f"timestamp {result.timestamp_version}")
    else:
        click.echo("nothing is due")


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
    result = _call(config, lambda tuf_service: tuf_service.recover())
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
    result = _call(config, lambda tuf_service: tuf_service.bootstrap_development())
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
    shown: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if shown.get("stage") != stage:
            if shown:
                shown["bar"].render_finish()
            shown.update(stage=stage, bar=click.progressbar(length=max(total, 1), label=f"{stage:<5}"))
        shown["bar"].update(done - shown["bar"].pos)

    try:
        result = _call(config, lambda tuf_service: tuf_service.backfill(
            batch_files=batch_files, batch_bins=batch_bins, progress=progress))
    finally:
        if shown:
            shown["bar"].render_finish()
    for reason in result.skipped:
        click.echo(f"skipped: {reason}", err=True)
    stages = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in result.stages.items())
    click.echo(f"backfilled {result.files} file(s) and {result.pages} project page(s); "
               f"re-signed {result.bins} bin(s) in {result.seconds:.1f}s ({stages})"
               + (f"; skipped {len(result.skipped)} invalid file(s)" if result.skipped else ""))


# -- the offline key ceremony (no database, no service) ---------------------------


def _duration(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _public_keys(ctx: click.Context, param: click.Parameter, value: Any) -> list:
    try:
        return [ceremonylib.load_public_key(path) for path in value or ()]
    except ceremonylib.CeremonyError as exc:
        raise click.BadParameter(str(exc)) from None


def _load_spec(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """``--spec FILE``: a JSON object of option values (option names with '_'), overridden by options."""
    if value is None:
        return
    try:
        spec = json.loads(open(value, "rb").read())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}") from None
    if not isinstance(spec, dict):
        raise click.BadParameter(f"{value} must hold a JSON object of option values")
    ctx.default_map = {**(ctx.default_map or {}), **spec}


def _show_payload(payload: Any) -> list[str]:
    """Print who signed what and the digests to read aloud; return the problems."""
    digest = payload.digest()
    click.echo(f"payload digest (read aloud): {' '.join(digest[i:i + 4] for i in range(0, 64, 4))}")
    for report in payload.report():
        click.echo(f"{report.role} v{report.version}  expires {report.expires.isoformat()}  "
                   f"sha256 {report.digest}")
        for t in report.thresholds:
            click.echo(f"  {t.label} asks {t.threshold} of {len(t.signed) + len(t.missing)} "
                       f"{report.role} keys: signed {len(t.signed)}"
                       + (f" ({', '.join(k[:12] for k in t.signed)})" if t.signed else "")
                       + (f"; not yet: {', '.join(k[:12] for k in t.missing)}" if t.missing else ""))
        for sig in report.signatures:
            if sig.state != "valid":
                click.echo(f"  signature by {sig.keyid[:12]}: {sig.state}")
    root = payload.root_in_force
    targets = payload.targets.signed if payload.targets else None
    if root is not None:
        online = root.roles["snapshot"]
        click.echo(f"online key(s): {', '.join(k[:12] for k in online.keyids)} (threshold {online.threshold})")
    if targets is not None and targets.delegations and targets.delegations.succinct_roles:
        succinct = targets.delegations.succinct_roles
        click.echo(f"bins: {2**succinct.bit_length} ({succinct.name_prefix}-*)")
    problems = payload.problems()
    for problem in problems:
        click.echo(f"problem: {problem}")
    click.echo("ready to install" if not problems else "not ready")
    return problems


@tuf.group()
def ceremony() -> None:
    """Offline signing of root and targets, one key holder after another."""


@ceremony.command()
@click.option("--spec", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_spec, help="JSON file of option values (e.g. {\"root_key\": [...]}).")
@click.option("--root-key", multiple=True, required=True, callback=_public_keys,
              help="Public key file (PEM or TUF key JSON) of a root key holder; repeat.")
@click.option("--root-threshold", type=int, required=True)
@click.option("--targets-key", multiple=True, required=True, callback=_public_keys,
              help="Public key file of a targets key holder; repeat.")
@click.option("--targets-threshold", type=int, required=True)
@click.option("--online-key", multiple=True, required=True, callback=_public_keys,
              help="Public key file of the online key (bins, snapshot, timestamp); repeat.")
@click.option("--online-threshold", type=int, default=1, show_default=True)
@click.option("--bin-count", type=int, required=True, help="Number of hash bins, a power of two.")
@click.option("--bin-prefix", default="bins", show_default=True)
@click.option("--root-expiry", default="365d", show_default=True, callback=_duration)
@click.option("--targets-expiry", default="365d", show_default=True, callback=_duration)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def init(root_key, root_threshold, targets_key, targets_threshold, online_key, online_threshold,
         bin_count, bin_prefix, root_expiry, targets_expiry, output) -> None:
    """Write the unsigned root v1 and targets v1 payload."""
    try:
        now = utcnow()
        root, targets = ceremonylib.build_roles(
            root=ceremonylib.RoleSpec(root_key, root_threshold),
            targets=ceremonylib.RoleSpec(targets_key, targets_threshold),
            online=ceremonylib.RoleSpec(online_key, online_threshold),
            bin_bits=ceremonylib.bin_bits(bin_count), bin_prefix=bin_prefix,
            root_expires=now + root_expiry, targets_expires=now + targets_expiry,
        )
        payload = ceremonylib.Payload(root=root, targets=targets)
        problems = payload.shape_problems()
        if problems:
            raise ceremonylib.CeremonyError(problems[0])
        _write_new(output, payload.to_bytes())
    except ceremonylib.CeremonyError as exc:
        _fail(exc)
    click.echo(f"wrote {output}: root v1 and targets v1, unsigned; digest {payload.digest()}")


@ceremony.command()
@click.option("--root", "root_file", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The current N.root.json, as published.")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The current N.targets.json, as published.")
@click.option("--add-root-key", multiple=True, callback=_public_keys)
@click.option("--remove-root-key", multiple=True, metavar="KEYID")
@click.option("--root-threshold", type=int)
@click.option("--add-targets-key", multiple=True, callback=_public_keys)
@click.option("--remove-targets-key", multiple=True, metavar="KEYID")
@click.option("--targets-threshold", type=int)
@click.option("--online-key", multiple=True, callback=_public_keys,
              help="Replace the online key(s) with these public keys; repeat.")
@click.option("--online-threshold", type=int)
@click.option("--root-expiry", callback=_duration, help="New root expiry from now, e.g. 365d.")
@click.option("--targets-expiry", callback=_duration, help="Renew targets: expiry from now, e.g. 365d.")
@click.option("--without-old-keys", is_flag=True,
              help="The old targets or online keys are lost or compromised: the new targets needs "
                   "only the new targets keys (install then signs with the new online key alone).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def prepare(root_file, targets_file, add_root_key, remove_root_key, root_threshold, add_targets_key,
            remove_targets_key, targets_threshold, online_key, online_threshold, root_expiry,
            targets_expiry, without_old_keys, output) -> None:
    """Write the unsigned next root and/or targets: key rotation, thresholds, renewal."""
    try:
        current = {}
        for name, path in (("root", root_file), ("targets", targets_file)):
            try:
                current[name] = Metadata.from_file(path)
            except Exception as exc:
                raise ceremonylib.CeremonyError(f"{path}: not valid TUF metadata ({exc})") from None
            if current[name].signed.type != name:
                raise ceremonylib.CeremonyError(f"{path}: expected {name}, found {current[name].signed.type}")
        root, targets = ceremonylib.next_roles(
            current["root"], current["targets"],
            add_root_keys=add_root_key, remove_root_keys=remove_root_key, root_threshold=root_threshold,
            add_targets_keys=add_targets_key, remove_targets_keys=remove_targets_key,
            targets_threshold=targets_threshold, online_keys=online_key,
            online_threshold=online_threshold, root_expiry=root_expiry, targets_expiry=targets_expiry,
        )
        payload = ceremonylib.Payload(trusted_root=current["root"], root=root, targets=targets,
                                      old_keys_unavailable=without_old_keys)
        _write_new(output, payload.to_bytes())
    except (ceremonylib.CeremonyError, SigningError) as exc:
        _fail(exc)
    made = " and ".join(f"{n} v{md.signed.version}" for n, md in payload.roles())
    click.echo(f"wrote {output}: {made}, unsigned; digest {payload.digest()}")


def _write_new(path: str, data: bytes) -> None:
    """Write a new file; refuse to overwrite (a signed payload is never clobbered by accident)."""
    try:
        with open(path, "xb") as handle:
            handle.write(data)
    except FileExistsError:
        raise ceremonylib.CeremonyError(f"{path} exists; choose another --output") from None


@ceremony.command("key-id")
@click.argument("public_key", type=click.Path(dir_okay=False))
def key_id(public_key) -> None:
    """Print the TUF key id of a public key file, for holders to read aloud."""
    try:
        key = ceremonylib.load_public_key(public_key)
    except ceremonylib.CeremonyError as exc:
        _fail(exc)
    click.echo(f"{key.keyid}  {key.keytype}/{key.scheme}")


@ceremony.command()
@click.argument("payload_file", type=click.Path(dir_okay=False))
@click.option("--key", "uri", required=True,
              help="Private key URI: file2:PATH, hsm:, awskms:, gcpkms:, azurekms:, hv:.")
@click.option("--keyid", help="The key id this key should be (skips trying each listed key).")
@click.option("--expect-digest", help="Refuse unless the payload digest starts with this (read aloud).")
def sign(payload_file, uri, keyid, expect_digest) -> None:
    """Add one signature, with one key, to the payload (in place)."""
    try:
        payload = ceremonylib.Payload.from_file(payload_file)
        digest = payload.digest()
        if expect_digest and not digest.startswith(expect_digest.replace(" ", "").lower()):
            raise ceremonylib.CeremonyError(
                f"the payload digest is {digest}, not the one read aloud: do not sign"
            )
        signed = payload.sign(uri, keyid)
        payload.write(payload_file)
    except ceremonylib.CeremonyError as exc:
        _fail(exc)
    for role, signed_keyid in signed:
        click.echo(f"signed {role} with key {signed_keyid}")
    _show_payload(payload)


@ceremony.command("verify")
@click.argument("payload_file", type=click.Path(dir_okay=False))
def verify_payload(payload_file) -> None:
    """Who signed, what is missing, and the digests to read aloud; exit 1 unless ready."""
    try:
        payload = ceremonylib.Payload.from_file(payload_file)
    except ceremonylib.CeremonyError as exc:
        _fail(exc)
    if _show_payload(payload):
        sys.exit(1)


# -- putting a signed payload online -------------------------------------------------


def _signed_payload(payload_file: str) -> Any:
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
    try:
        payload = _signed_payload(payload_file)
        if payload.trusted_root is not None:
            raise ceremonylib.CeremonyError("this payload updates an installed root: use 'tuf install'")
        with service(config) as tuf_service:
            result = tuf_service.bootstrap(payload.role_bytes("root"), payload.role_bytes("targets"))
    except (ceremonylib.CeremonyError, RepositoryError, ConfigurationError, SigningError) as exc:
        _fail(exc)
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
    try:
        payload = _signed_payload(payload_file)
        if payload.trusted_root is None:
            raise ceremonylib.CeremonyError("this payload is a bootstrap payload: use 'tuf bootstrap'")
        with service(config) as tuf_service:
            result = tuf_service.install(
                payload.role_bytes("root"), payload.role_bytes("targets"), online_signer or None,
                without_old_key=without_old_key or payload.old_keys_unavailable,
            )
    except (ceremonylib.CeremonyError, RepositoryError, ConfigurationError, SigningError) as exc:
        _fail(exc)
    click.echo(f"installed: root v{result.root_version}, targets v{result.targets_version}"
               + (", online key rotated" if result.online_key_rotated else "")
               + f"; timestamp {result.timestamp_version}")


# -- auditing and housekeeping -------------------------------------------------------


@tuf.command("verify")
@click.argument("metadata_url")
@click.option("--root", "root_file", type=click.File("rb"),
              help="A root you trust (else 1.root.json is fetched: trust on first use).")
@click.option("--targets-url", help="Where distribution files are served, to sample them.")
@click.option("--simple-url", help="Where hash-prefixed simple pages are served, to sample them.")
@click.option("--sample", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many targets to download and check.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="Remember each version's bytes here; a later audit flags a version rewritten.")
def verify_repository(metadata_url, root_file, targets_url, simple_url, sample, state_file) -> None:
    """Audit a published repository as an outsider; exit 1 naming every problem."""
    from pathlib import Path

    from warehouse_tuf.verify import audit

    report = audit(
        metadata_url, root=root_file.read() if root_file else None, targets_url=targets_url,
        simple_url=simple_url, sample=sample, state_file=Path(state_file) if state_file else None,
    )
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    summary = (f"timestamp {report.timestamp_version}, snapshot {report.snapshot_version}, "
               f"{report.bins_checked} bins checked, {report.targets_sampled} targets sampled"
               if report.timestamp_version is not None else "no client could refresh")
    if report.problems:
        click.echo(f"FAILED ({len(report.problems)} problem(s)): {summary}", err=True)
        sys.exit(1)
    click.echo(f"ok: {summary}")


@tuf.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.pass_obj
def gc(config: Any, dry_run: bool) -> None:
    """Delete metadata versions outside the retention window (tuf.retention); never a root."""
    result = _call(config, lambda tuf_service: tuf_service.gc(dry_run=dry_run))
    for name in result.deleted:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {name}")
    click.echo(f"{len(result.deleted)} version(s) {'to delete' if dry_run else 'deleted'}, "
               f"{result.kept} kept (roots are always kept)")
