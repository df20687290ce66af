"""What needs no index: the offline key ceremony, an outsider's audit of a published repository,
key ids, and ``main``, the ``warehouse-tuf`` console script built from them."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from securesystemslib.signer import Key

from warehouse_tuf.cli.common import CommandGroup, UnreadableError, keyids_text, short_keyid

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
                       + (f" ({keyids_text(t.signed)})" if t.signed else "")
                       + (f"; not yet: {keyids_text(t.missing)}" if t.missing else ""))
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
        click.echo(f"online key(s): {keyids_text(sorted(online.keyids))} (threshold {online.threshold})")
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
