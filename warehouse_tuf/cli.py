"""The extension's command line.

- ``tuf``: the click group a host attaches to its own (``warehouse tuf ...`` in
  Warehouse, ``python -m dev tuf ...`` here). Attach it with one line:
  ``warehouse.add_command(tuf)``. The root group's context object is the
  host's Pyramid Configurator (Warehouse's ``LazyConfig``); commands build a
  scripting request from its registry.
- ``main``: the ``warehouse-tuf`` console script, for what needs no index: the
  offline ``ceremony``, ``verify`` (an outsider's audit) and ``key-id``. A key
  holder on an offline machine needs only ``pip install warehouse-tuf``.

Modules are imported inside the commands: ``--help`` loads click alone.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from securesystemslib.signer import Key

T = TypeVar("T")

#: Key ids are shown by their first 12 hex digits everywhere (ceremony, status, targets).
KEYID_CHARS = 12


def short_keyid(keyid: str) -> str:
    return keyid[:KEYID_CHARS]


@contextlib.contextmanager
def service(config: Any) -> Iterator[Any]:
    """The TUF service (``ITUFService``) of a scripting request on the host's registry."""
    from pyramid.scripting import prepare

    from warehouse_tuf.interfaces import ITUFService

    env = prepare(registry=config.registry)
    try:
        yield env["request"].find_service(ITUFService, context=None)
    finally:
        env["closer"]()


class CommandError(click.ClickException):
    """A command's error: one line, ``error: <message>``, on stderr; exit status 1."""

    def __init__(self, message: object) -> None:
        # One line whatever the message: logs and monitoring read the first line only.
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class UnreadableError(CommandError):
    """Nothing could be read (the database, storage, or a server): exit status 2."""

    exit_code = 2


def _fail(message: Exception | str) -> NoReturn:
    raise CommandError(message)


#: What a command reports as a one-line error: repository, setting, signer, ceremony and
#: storage problems (module -> its exception classes, subclasses included).
EXTENSION_ERRORS = {
    "warehouse_tuf.exceptions": ("RepositoryError", "CeremonyError"),
    "warehouse_tuf.settings": ("ConfigurationError",),
    "warehouse_tuf.signing": ("SigningError",),
    "warehouse_tuf.storage": ("StorageError",),
}


def _errors() -> tuple[type[Exception], ...]:
    """The classes of :data:`EXTENSION_ERRORS` whose modules are imported: only those can have
    been raised, and the offline ceremony's venv has no Pyramid to import the others with."""
    return tuple(getattr(sys.modules[module], name) for module, names in EXTENSION_ERRORS.items()
                 if module in sys.modules for name in names)


class CommandGroup(click.Group):
    """A group whose every command, nested groups included, reports the extension's errors
    (:func:`_errors`) as one :class:`CommandError` line, never a traceback."""

    group_class = type  # subgroups are CommandGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _errors() as exc:
            raise CommandError(exc) from None


def _call(config: Any, operation: Callable[[Any], T]) -> T:
    """``operation(service)`` with a scripting request's service."""
    with service(config) as tuf_service:
        return operation(tuf_service)


class Progress:
    """``progress(stage, done, total)`` callbacks drawn as click progress bars, one per stage.

    Bars are drawn only on a terminal; elsewhere (logs, pipes, tests) nothing is
    printed, so output stays one line per result.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = click.progressbar(length=max(total, 1), label=f"{stage:<8}", file=self.stream)
            self.bar.render_progress()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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


def relative(seconds: float) -> str:
    """``in 20h``, ``3m ago``: a duration from now, in hours up to two days, then days."""
    ahead = seconds > 0
    left = abs(int(seconds))
    if left < 60:
        text = f"{left}s"
    elif left < 3600:
        text = f"{left // 60}m"
    elif left < 2 * 86400:
        minutes = left % 3600 // 60
        text = f"{left // 3600}h" + (f"{minutes:02d}m" if left < 10 * 3600 and minutes else "")
    else:
        text = f"{left // 86400}d"
    return f"in {text}" if ahead else f"{text} ago"


def _keys(keyids: list[str]) -> str:
    return ", ".join(short_keyid(keyid) for keyid in keyids)


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
                   f"{role['threshold']} of {len(role['keyids'])}: {_keys(role['keyids'])}")
    bins = report["bins"]
    earliest = f"{relative(bins['earliest_expiry_seconds'])} ({bins['earliest_expiry'][:16]})"
    click.echo(f"{'bins':<12} {bins['count']:>8}  {earliest:<28} {_keys(bins['keyids'])}; "
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

    rows = _call(config, read)
    if not rows:
        _fail(f"no signed targets for project {project!r}"
              + (f" version {release!r}" if release else "")
              + " (not uploaded, not yet published, or a typo)")
    for row in rows:
        version = f"v{row['bin_version']}" + (" (re-signing)" if row["resigning"] else "")
        click.echo(f"{row['path']}  {row['length']}  sha256:{row['sha256']}  {row['bin']} {version}")
    if not check:
        return
    if not found["url"]:
        _fail("--verify needs the metadata URL clients use: set tuf.metadata_url or give --metadata-url")
    from warehouse_tuf.verify import derived_urls, verify_targets

    files_url, pages_url = derived_urls(found["url"], targets_url, simple_url)
    failures = verify_targets(found["url"], found["root"], [row["path"] for row in rows],
                              targets_url=files_url, simple_url=pages_url)
    for path, problem in failures.items():
        click.echo(f"problem: {path}: {problem}", err=True)
    if failures:
        _fail(f"{len(failures)} of {len(rows)} target(s) failed verification as a client")
    click.echo(f"verified {len(rows)} target(s) as a client would, from {found['url']}")


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
    result = _call(config, _with_progress(lambda tuf_service: tuf_service.refresh()))
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
    result = _call(config, _with_progress(
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
    result = _call(config, _with_progress(lambda tuf_service: tuf_service.recover()))
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
    with Progress() as progress:
        result = _call(config, lambda tuf_service: tuf_service.backfill(
            batch_files=batch_files, batch_bins=batch_bins, progress=progress))
    for reason in result.skipped:
        click.echo(f"skipped: {reason}", err=True)
    stages = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in result.stages.items())
    click.echo(f"backfilled {result.files} file(s) and {result.pages} project page(s); "
               f"re-signed {result.bins} bin(s) in {result.seconds:.1f}s ({stages})"
               + (f"; skipped {len(result.skipped)} invalid file(s)" if result.skipped else ""))


# -- the offline key ceremony (no database, no service) ---------------------------


def _duration(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from warehouse_tuf.settings import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _public_keys(ctx: click.Context, param: click.Parameter, value: Any) -> list:
    from warehouse_tuf import ceremony as ceremonylib, keyfiles

    try:
        return [keyfiles.load_public_key(path) for path in value or ()]
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
    from warehouse_tuf.ceremony import read_aloud

    click.echo(f"payload digest (read aloud): {read_aloud(payload.digest())}")
    for report in payload.report():
        click.echo(f"{report.role} v{report.version}  expires {report.expires.isoformat()}  "
                   f"sha256 {report.digest}")
        for t in report.thresholds:
            click.echo(f"  {t.label} asks {t.threshold} of {len(t.signed) + len(t.missing)} "
                       f"{report.role} keys: signed {len(t.signed)}"
                       + (f" ({_keys(t.signed)})" if t.signed else "")
                       + (f"; not yet: {_keys(t.missing)}" if t.missing else ""))
        for sig in report.signatures:
            if sig.state != "valid":
                click.echo(f"  signature by {short_keyid(sig.keyid)}: {sig.state}")
        if report.role == "targets":
            for label in payload.targets_signed_at_install():
                click.echo(f"  {label} trusts the online key for targets: 'tuf install' adds its signature")
    root = payload.root_in_force
    targets = payload.targets.signed if payload.targets else None
    if root is not None:
        from warehouse_tuf import trust_model

        online = root.roles["snapshot"]
        click.echo(f"online key(s): {_keys(sorted(online.keyids))} (threshold {online.threshold})")
        click.echo(f"trust model: {trust_model.DESCRIPTIONS[trust_model.model(root)]}")
    if targets is not None and targets.delegations and targets.delegations.succinct_roles:
        succinct = targets.delegations.succinct_roles
        click.echo(f"bins: {2**succinct.bit_length} ({succinct.name_prefix}-*)")
    problems = payload.problems()
    for problem in problems:
        click.echo(f"problem: {problem}")
    click.echo("ready to install" if not problems else "not ready")
    return problems


@click.group(cls=CommandGroup)
def ceremony() -> None:
    """Offline signing of root and targets, one key holder after another (docs/ceremony.md)."""


@ceremony.command("generate-key")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The new private key file (PEM, unencrypted, mode 0600); refused if it exists.")
@click.option("--public", "public_output", type=click.Path(dir_okay=False),
              help="Where to write the public key (PEM)  [default: OUTPUT with .pub.pem]")
@click.option("--scheme", type=click.Choice(["ed25519", "ecdsa-sha2-nistp256", "rsa-pss-sha256"]),
              default="ed25519", show_default=True)
def generate_key(output: str, public_output: str | None, scheme: str) -> None:
    """Create a key pair in files: the private key for its holder, the public key for the coordinator.

    For a key in an HSM, create it with the HSM's own tool and export its
    public key with 'ceremony import-hsm-key' (securesystemslib cannot create
    keys inside an HSM).
    """
    from warehouse_tuf import keyfiles

    public_output = public_output or keyfiles.public_key_path(output)
    key = keyfiles.generate_key(output, public_output, scheme)
    click.echo(f"private key: {output} (keep it offline; sign with --key file2:{output})")
    click.echo(f"public key:  {public_output} (give this one to the coordinator)")
    click.echo(f"key id:      {short_keyid(key.keyid)}  ({key.keyid}, {key.keytype}/{key.scheme})")


@ceremony.command("import-hsm-key")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The public key file to write (TUF key JSON).")
def import_hsm_key(output: str) -> None:
    """Export the public key of the key on an HSM (PKCS#11) as a TUF key file, with its signing URI.

    Needs securesystemslib's HSM support (pip install 'securesystemslib[hsm]',
    PyKCS11) and PYKCS11LIB naming the token's PKCS#11 module. The key must be
    an ECDSA P-256 or P-384 key with PKCS#11 key id 2 (PIV slot 9c, "digital
    signature"), where securesystemslib's HSMSigner reads it.
    """
    from warehouse_tuf import keyfiles

    uri, key = keyfiles.import_hsm_key(output)
    click.echo(f"public key: {output}")
    click.echo(f"key id:     {short_keyid(key.keyid)}  ({key.keyid}, {key.keytype}/{key.scheme})")
    click.echo(f"sign with:  --key {uri}")


@ceremony.command()
@click.option("--spec", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_spec, help="JSON file of option values (e.g. {\"root_key\": [...]}).")
@click.option("--root-key", multiple=True, required=True, callback=_public_keys,
              help="Public key file (PEM or TUF key JSON) of a root key holder; repeat.")
@click.option("--root-threshold", type=int, required=True)
@click.option("--targets-key", multiple=True, callback=_public_keys,
              help="Public key file of a targets key holder; repeat.")
@click.option("--targets-threshold", type=int)
@click.option("--targets-online", is_flag=True,
              help="Root is the only offline role: the online key signs targets (tuf.targets_online).")
@click.option("--online-key", multiple=True, required=True, callback=_public_keys,
              help="Public key file of the online key (bins, snapshot, timestamp); repeat.")
@click.option("--online-threshold", type=int, default=1, show_default=True)
@click.option("--bin-count", type=int, required=True, help="Number of hash bins, a power of two.")
@click.option("--bin-prefix", default="bins", show_default=True)
@click.option("--root-expiry", default="365d", show_default=True, callback=_duration)
@click.option("--targets-expiry", default="365d", show_default=True, callback=_duration)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def init(root_key: list[Key], root_threshold: int, targets_key: list[Key], targets_threshold: int | None,
         targets_online: bool, online_key: list[Key], online_threshold: int, bin_count: int, bin_prefix: str,
         root_expiry: timedelta, targets_expiry: timedelta, output: str) -> None:
    """Write the unsigned root v1 and targets v1 payload (root v1 alone with --targets-online)."""
    from warehouse_tuf import ceremony as ceremonylib
    from warehouse_tuf.models import utcnow

    targets_given = bool(targets_key) or targets_threshold is not None
    targets_spec = None
    if not targets_online and targets_key and targets_threshold is not None:
        targets_spec = ceremonylib.RoleSpec(targets_key, targets_threshold)
    elif not targets_online or targets_given:
        raise ceremonylib.CeremonyError("give --targets-key and --targets-threshold (PEP 458), or "
                                        "--targets-online (the online key signs targets), not both")
    now = utcnow()
    root, targets = ceremonylib.build_roles(
        root=ceremonylib.RoleSpec(root_key, root_threshold),
        targets=targets_spec,
        online=ceremonylib.RoleSpec(online_key, online_threshold),
        bin_bits=ceremonylib.bin_bits(bin_count), bin_prefix=bin_prefix,
        root_expires=now + root_expiry, targets_expires=now + targets_expiry,
    )
    payload = ceremonylib.Payload(root=root, targets=None if targets_spec is None else targets)
    problems = payload.shape_problems()
    if problems:
        raise ceremonylib.CeremonyError(problems[0])
    _write_new(output, payload.to_bytes())
    made = " and ".join(f"{n} v1" for n, _ in payload.roles())
    click.echo(f"wrote {output}: {made}, unsigned; digest {payload.digest()}")


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
@click.option("--targets-online/--targets-offline", default=None,
              help="Switch the trust model: the online key signs targets (root the only offline role), "
                   "or targets keys do (PEP 458; give --add-targets-key and --targets-threshold).")
@click.option("--without-old-keys", is_flag=True,
              help="The old targets or online keys are lost or compromised: the new targets needs "
                   "only the new targets keys (install then signs with the new online key alone).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def prepare(root_file: str, targets_file: str, add_root_key: list[Key], remove_root_key: tuple[str, ...],
            root_threshold: int | None, add_targets_key: list[Key], remove_targets_key: tuple[str, ...],
            targets_threshold: int | None, online_key: list[Key], online_threshold: int | None,
            root_expiry: timedelta | None, targets_expiry: timedelta | None, targets_online: bool | None,
            without_old_keys: bool, output: str) -> None:
    """Write the unsigned next root and/or targets: key rotation, thresholds, renewal."""
    from tuf.api.metadata import Metadata

    from warehouse_tuf import ceremony as ceremonylib

    current: dict[str, Metadata[Any]] = {}
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
        targets_online=targets_online,
    )
    payload = ceremonylib.Payload(trusted_root=current["root"], root=root, targets=targets,
                                  old_keys_unavailable=without_old_keys)
    _write_new(output, payload.to_bytes())
    made = " and ".join(f"{n} v{md.signed.version}" for n, md in payload.roles())
    click.echo(f"wrote {output}: {made}, unsigned; digest {payload.digest()}")


def _write_new(path: str, data: bytes) -> None:
    """Write a new file; refuse to overwrite (a signed payload is never clobbered by accident)."""
    from warehouse_tuf.ceremony import CeremonyError

    try:
        with open(path, "xb") as handle:
            handle.write(data)
    except FileExistsError:
        raise CeremonyError(f"{path} exists; choose another --output") from None


@ceremony.command("key-id")
@click.argument("public_key", type=click.Path(dir_okay=False))
def key_id(public_key: str) -> None:
    """Print the TUF key id of a public key file, for holders to read aloud."""
    from warehouse_tuf import keyfiles

    key = keyfiles.load_public_key(public_key)
    click.echo(f"{short_keyid(key.keyid)}  ({key.keyid}, {key.keytype}/{key.scheme})")


def _expected_digest(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--expect-digest``: at least four groups of four hex digits, as read aloud."""
    from warehouse_tuf.ceremony import MIN_DIGEST_GROUPS, parse_read_aloud

    if value is None:
        return None
    try:
        return parse_read_aloud(value, MIN_DIGEST_GROUPS)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@ceremony.command()
@click.argument("payload_file", type=click.Path(dir_okay=False))
@click.option("--key", "uri", required=True,
              help="Private key: a PEM file path (or file2:PATH), hsm:, awskms:, gcpkms:, azurekms:, hv:.")
@click.option("--keyid", help="The key id this key should be (skips trying each listed key).")
@click.option("--expect-digest", callback=_expected_digest, metavar="'XXXX XXXX XXXX XXXX ...'",
              help="Refuse unless the payload digest starts with these groups, as read aloud "
                   "(at least four groups of four).")
def sign(payload_file: str, uri: str, keyid: str | None, expect_digest: str | None) -> None:
    """Add one signature, with one key, to the payload (in place)."""
    from warehouse_tuf import ceremony as ceremonylib

    payload = ceremonylib.Payload.from_file(payload_file)
    digest = payload.digest()
    if expect_digest and not digest.startswith(expect_digest):
        raise ceremonylib.CeremonyError(
            f"the payload digest is {ceremonylib.read_aloud(digest)}, not the one read aloud: "
            "do not sign"
        )
    signed = payload.sign(uri, keyid)
    payload.write(payload_file)
    for role, signed_keyid in signed:
        click.echo(f"signed {role} with key {short_keyid(signed_keyid)}")
    _show_payload(payload)


@ceremony.command("verify")
@click.argument("payload_file", type=click.Path(dir_okay=False))
def verify_payload(payload_file: str) -> None:
    """Who signed, what is missing, and the digests to read aloud; exit 1 unless ready."""
    from warehouse_tuf import ceremony as ceremonylib

    payload = ceremonylib.Payload.from_file(payload_file)
    if _show_payload(payload):
        sys.exit(1)


tuf.add_command(ceremony)


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


# -- auditing and housekeeping -------------------------------------------------------


@click.command("verify")
@click.argument("metadata_url", envvar="TUF_VERIFY_METADATA_URL")
@click.option("--root", "root_file", type=click.File("rb"),
              help="A root you trust (else 1.root.json is fetched: trust on first use).")
@click.option("--targets-url", envvar="TUF_VERIFY_TARGETS_URL",
              help="Where distribution files are served  [default: /packages/ on the metadata "
                   "URL's host, as Warehouse serves them]")
@click.option("--simple-url", envvar="TUF_VERIFY_SIMPLE_URL",
              help="Where hash-prefixed simple pages are served  [default: /simple/ on the "
                   "metadata URL's host]")
@click.option("--sample", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many files, and how many pages, to download and check (0: none).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="Remember each version's bytes here; a later audit flags a version rewritten.")
def verify_repository(metadata_url: str, root_file: IO[bytes] | None, targets_url: str | None,
                      simple_url: str | None, sample: int, state_file: str | None) -> None:
    """Audit a published repository as an outsider; exit 1 naming every problem.

    Every bin is checked; a random sample of files and of simple pages is
    downloaded and verified against its signed hashes. Exit 2 when the server
    cannot be reached.
    """
    from pathlib import Path

    from warehouse_tuf.verify import audit, derived_urls

    targets_url, simple_url = derived_urls(metadata_url, targets_url, simple_url)
    report = audit(
        metadata_url, root=root_file.read() if root_file else None, targets_url=targets_url,
        simple_url=simple_url, sample=sample, state_file=Path(state_file) if state_file else None,
    )
    if report.unreachable:
        raise UnreadableError(report.unreachable)
    if report.trust_model is not None:
        from warehouse_tuf.trust_model import DESCRIPTIONS, WARNINGS

        click.echo(f"trust model: {DESCRIPTIONS[report.trust_model]}")
        click.echo(f"  warning: {WARNINGS[report.trust_model]}")
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    if report.timestamp_version is None:
        summary = "no client could refresh"
    else:
        summary = (f"timestamp {report.timestamp_version}, snapshot {report.snapshot_version}, "
                   f"{report.bins_checked} bins checked, {report.sample_summary()}")
    if report.problems:
        click.echo(f"FAILED ({len(report.problems)} problem(s)): {summary}", err=True)
        sys.exit(1)
    click.echo(f"ok: {summary}")


tuf.add_command(verify_repository)


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


# -- the warehouse-tuf console script ---------------------------------------------------


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """warehouse-tuf: what needs no index. The key ceremony (offline), an outsider's audit of a
    published repository, and key ids.

    Commands that need the index run in the host: 'warehouse tuf ...' in
    Warehouse, 'python -m dev tuf ...' on the development host.
    """


main.add_command(ceremony)
main.add_command(verify_repository)
main.add_command(key_id)
