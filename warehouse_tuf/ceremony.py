"""The offline key ceremony: payloads that key holders sign one after another.

A ceremony payload is one JSON file (``FORMAT`` below) that travels from key
holder to key holder; nothing in it is secret::

    {
      "warehouse_tuf_ceremony": 1,
      "trusted_root": <root N as published, or null at bootstrap>,
      "root": <root N+1 (v1 at bootstrap) being signed, or null>,
      "targets": <targets being signed, or null>
    }

Under the targets-online trust model (``trust_model.py``) a payload holds a
root only, except when it switches models: the index signs targets itself.

Each role is a complete TUF metadata object (``signed`` and ``signatures``).
``tuf ceremony sign`` adds one signature with one key, ``tuf ceremony verify``
reports who signed and what is missing, and ``tuf bootstrap`` / ``tuf install``
put a complete payload online. Nothing here touches a database or a service.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, Metadata, Root, SuccinctRoles, Targets
from tuf.api.serialization.json import JSONSerializer

from warehouse_tuf import keyfiles, roles, signing, targets as targetlib, trust_model
from warehouse_tuf.clock import utcnow
from warehouse_tuf.exceptions import CeremonyError

FORMAT = "warehouse_tuf_ceremony"
FORMAT_VERSION = 1
OFFLINE_ROLES = roles.OFFLINE
#: The most bins a payload may delegate to (2**20, as ``tuf.bin_count`` allows).
MAX_BIN_BITS = targetlib.MAX_BIN_BITS
#: Largest payload accepted: a root and a targets trusting dozens of keys take a few kB.
MAX_PAYLOAD_BYTES = 2**20


# -- the digest, read aloud ----------------------------------------------------------

#: ``sign --expect-digest`` needs at least this many groups of four hex digits (64 bits).
MIN_DIGEST_GROUPS = 4


def read_aloud(digest: str) -> str:
    """``8c868efd...`` as ``8c86 8efd ...``: groups of four, as holders read it aloud."""
    return " ".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def parse_read_aloud(text: str, min_groups: int = MIN_DIGEST_GROUPS) -> str:
    """The digest prefix a holder typed as groups of four hex digits; refuses fewer than ``min_groups``."""
    groups = text.lower().split()
    if len(groups) == 1 and len(groups[0]) > 4:  # typed without spaces
        groups = [groups[0][i:i + 4] for i in range(0, len(groups[0]), 4)]
    if any(len(group) != 4 or set(group) - set("0123456789abcdef") for group in groups):
        raise ValueError(f"{text!r}: give groups of four hex digits, as 'ceremony verify' prints them")
    if len(groups) < min_groups:
        raise ValueError(f"{text!r} has {len(groups)} group(s): give at least {min_groups} groups of "
                         "the digest read aloud")
    return "".join(groups)


# -- building roles ----------------------------------------------------------------


@dataclass
class RoleSpec:
    """The keys and threshold of one role."""

    keys: list[Key]
    threshold: int

    def check(self, label: str) -> None:
        ids = [k.keyid for k in self.keys]
        if not ids:
            raise CeremonyError(f"{label}: no keys given")
        if len(set(ids)) != len(ids):
            raise CeremonyError(f"{label}: the same key is given twice")
        if not 1 <= self.threshold <= len(ids):
            raise CeremonyError(
                f"{label}: threshold {self.threshold} must be from 1 to the number of keys ({len(ids)})"
            )


def bin_bits(bin_count: int) -> int:
    """TAP 15's ``bit_length`` for ``bin_count`` bins (:func:`warehouse_tuf.targets.bin_bits`)."""
    try:
        return targetlib.bin_bits(bin_count)
    except ValueError as exc:
        raise CeremonyError(str(exc)) from None


def build_roles(
    *, root: RoleSpec, targets: RoleSpec | None, online: RoleSpec, bin_bits: int, bin_prefix: str,
    root_expires: datetime.datetime, targets_expires: datetime.datetime, version: int = 1,
) -> tuple[Metadata[Root], Metadata[Targets]]:
    """Unsigned root and targets: the offline keys, and the online key(s) for snapshot,
    timestamp and the hash bins (TAP 15 succinct delegation). ``targets`` None: root trusts
    the online key(s) for targets too (the targets-online model, ``trust_model.py``)."""
    root_signed = build_root(root=root, targets=targets, online=online, expires=root_expires, version=version)
    return Metadata(root_signed), Metadata(build_targets(online, bin_bits, bin_prefix, targets_expires, version))


def build_targets(online: RoleSpec, bin_bits: int, bin_prefix: str, expires: datetime.datetime,
                  version: int = 1) -> Targets:
    """An unsigned targets delegating every bin to the online key(s)."""
    signed = Targets(version=version, expires=expires)
    delegate_bins(signed, online, bin_bits, bin_prefix)
    return signed


def online_spec(root: Root) -> RoleSpec:
    """The online keys and threshold ``root`` trusts (its snapshot role's)."""
    role = root.roles["snapshot"]
    return RoleSpec([root.keys[keyid] for keyid in role.keyids], role.threshold)


def build_root(*, root: RoleSpec, targets: RoleSpec | None, online: RoleSpec,
               expires: datetime.datetime, version: int) -> Root:
    """A root trusting these keys, the online ones for snapshot and timestamp (and for targets
    when ``targets`` is None)."""
    if targets is not None and {k.keyid for k in targets.keys} == {k.keyid for k in online.keys} \
            and targets.threshold == online.threshold:
        raise CeremonyError("the targets keys are the online keys: that is the targets-online model "
                            "(give --targets-online instead of targets keys)")
    targets = targets or online
    for label, spec in (("root", root), ("targets", targets), ("online", online)):
        spec.check(f"{label} keys")
    signed = Root(version=version, expires=expires, consistent_snapshot=True)
    for role, spec in (("root", root), ("targets", targets), ("snapshot", online), ("timestamp", online)):
        for key in spec.keys:
            signed.add_key(key, role)
        signed.roles[role].threshold = spec.threshold
    return signed


def redelegated(targets: Targets, root: Root) -> Targets:
    """A copy of ``targets`` delegating its bins to the online keys ``root`` trusts."""
    signed = copy.deepcopy(targets)
    succinct = signed.delegations.succinct_roles if signed.delegations else None
    if succinct is None:
        raise CeremonyError("targets must delegate to the bins with succinct_roles (TAP 15)")
    delegate_bins(signed, online_spec(root), succinct.bit_length, succinct.name_prefix)
    return signed


def delegate_bins(targets: Targets, online: RoleSpec, bits: int, prefix: str) -> None:
    """Delegate every bin of ``targets`` to the ``online`` keys (TAP 15 succinct roles)."""
    succinct = SuccinctRoles(keyids=[], threshold=online.threshold, bit_length=bits, name_prefix=prefix)
    targets.delegations = Delegations(keys={}, succinct_roles=succinct)
    for key in online.keys:
        targets.add_key(key)


def next_roles(
    current_root: Metadata[Root], current_targets: Metadata[Targets], *,
    add_root_keys: Iterable[Key] = (), remove_root_keys: Iterable[str] = (),
    root_threshold: int | None = None,
    add_targets_keys: Iterable[Key] = (), remove_targets_keys: Iterable[str] = (),
    targets_threshold: int | None = None,
    online_keys: Iterable[Key] = (), online_threshold: int | None = None,
    root_expiry: datetime.timedelta | None = None,
    targets_expiry: datetime.timedelta | None = None,
    targets_online: bool | None = None,
) -> tuple[Metadata[Root] | None, Metadata[Targets] | None]:
    """Root N+1 and/or targets M+1 with the requested changes, unsigned.

    A new root is made when any key, threshold or the root expiry changes; a
    new targets when its keys or the online key change (it must be signed by
    the new keys and delegate to the new online key) or its expiry is renewed.

    ``targets_online`` switches the trust model (None keeps it). In the
    targets-online model no targets is made unless the model switches: the
    index signs targets itself. Switching to it, targets M+1 is signed by the
    old targets keys, so that clients on root N accept it; switching back to
    PEP 458, by the new targets keys (the index adds the online key's
    signature for clients on root N).
    """
    now = utcnow()
    old = current_root.signed
    was_online = trust_model.targets_online(old)
    online_model = was_online if targets_online is None else targets_online
    switching = online_model != was_online
    targets_changes = bool(add_targets_keys) or bool(remove_targets_keys) or targets_threshold is not None
    if online_model and targets_changes:
        raise CeremonyError("targets keys have no place in the targets-online model (the online key signs "
                            "targets): give --targets-offline to switch to PEP 458's offline targets")
    if online_model and not switching and targets_expiry is not None:
        raise CeremonyError("in the targets-online model the index renews targets itself (tuf refresh): "
                            "no --targets-expiry")
    if switching and not online_model and not (list(add_targets_keys) and targets_threshold):
        raise CeremonyError("switching to offline targets needs the new targets keys and their threshold "
                            "(--add-targets-key ..., --targets-threshold)")
    specs = {}
    for role, add, remove, threshold in (
        ("root", list(add_root_keys), list(remove_root_keys), root_threshold),
        ("targets", list(add_targets_keys), list(remove_targets_keys), targets_threshold),
    ):
        # Switching back to offline targets starts from no targets key (the online ones held it).
        keys = {} if role == "targets" and was_online else {k: old.keys[k] for k in old.roles[role].keyids}
        for keyid in remove:
            if keyid not in keys:
                raise CeremonyError(f"cannot remove {role} key {keyid[:12]}: root v{old.version} does not list it")
            del keys[keyid]
        for key in add:
            if key.keyid in keys:
                raise CeremonyError(f"{role} key {key.keyid[:12]} is already a {role} key")
            keys[key.keyid] = key
        specs[role] = RoleSpec(list(keys.values()), threshold or old.roles[role].threshold)
    current_online = signing.online_keys(old, current_targets.signed)
    new_online = list(online_keys) or list(current_online.keys.values())
    specs["online"] = RoleSpec(new_online, online_threshold or current_online.threshold)
    if online_model:
        specs["targets"] = specs["online"]
    for label, spec in specs.items():
        spec.check(f"{label} keys")

    def changed(role: str, spec: RoleSpec) -> bool:
        return ({k.keyid for k in spec.keys} != set(old.roles[role].keyids)
                or spec.threshold != old.roles[role].threshold)

    online_changed = changed("snapshot", specs["online"])
    targets_keys_changed = changed("targets", specs["targets"])
    root_due = (changed("root", specs["root"]) or targets_keys_changed or online_changed
                or root_expiry is not None)
    targets_due = switching or (not online_model and (
        targets_keys_changed or online_changed or targets_expiry is not None))
    if not root_due and not targets_due:
        raise CeremonyError("nothing to change: give keys to add or remove, thresholds, or an expiry")
    new_root = new_targets = None
    delegations = current_targets.signed.delegations
    succinct = delegations.succinct_roles if delegations is not None else None
    if succinct is None:
        raise CeremonyError(f"targets v{current_targets.signed.version} has no succinct hash-bin delegation")
    if root_due:
        expires = now + root_expiry if root_expiry else old.expires
        if expires <= now:
            raise CeremonyError(f"root v{old.version} has expired: give --root-expiry")
        new_root = Metadata(build_root(
            root=specs["root"], targets=None if online_model else specs["targets"], online=specs["online"],
            expires=expires, version=old.version + 1,
        ))
    if targets_due:
        signed = copy.deepcopy(current_targets.signed)
        signed.version += 1
        if targets_expiry:
            signed.expires = now + targets_expiry
        elif signed.expires <= now:
            raise CeremonyError(f"targets v{current_targets.signed.version} has expired: give --targets-expiry")
        delegate_bins(signed, specs["online"], succinct.bit_length, succinct.name_prefix)
        new_targets = Metadata(signed)
    return new_root, new_targets


# -- the payload --------------------------------------------------------------------


@dataclass
class SignatureReport:
    keyid: str
    state: str  # "valid", "invalid" or "unknown key"


@dataclass
class ThresholdReport:
    """How far one role is signed towards the threshold one root sets for it."""

    label: str
    threshold: int
    signed: list[str]
    missing: list[str]

    @property
    def met(self) -> bool:
        return len(self.signed) >= self.threshold


@dataclass
class RoleReport:
    role: str
    version: int
    expires: datetime.datetime
    digest: str
    thresholds: list[ThresholdReport] = field(default_factory=list)
    signatures: list[SignatureReport] = field(default_factory=list)


@dataclass
class Payload:
    """Root and/or targets being signed, and the root trusted before them."""

    trusted_root: Metadata[Root] | None = None
    root: Metadata[Root] | None = None
    targets: Metadata[Targets] | None = None
    #: The old targets or online keys are lost or compromised: the new targets is
    #: signed by the new targets keys only (root N+1 always needs root N's threshold).
    old_keys_unavailable: bool = False

    # -- reading and writing

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        if len(data) > MAX_PAYLOAD_BYTES:
            raise CeremonyError(f"the payload is over {MAX_PAYLOAD_BYTES} bytes, the limit")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CeremonyError(f"the payload is not valid JSON ({exc})") from None
        if not isinstance(obj, dict) or obj.get(FORMAT) != FORMAT_VERSION:
            raise CeremonyError(
                f"not a warehouse-tuf ceremony payload (expected \"{FORMAT}\": {FORMAT_VERSION})"
            )
        unknown = set(obj) - {FORMAT, "trusted_root", "old_keys_unavailable", *OFFLINE_ROLES}
        if unknown:
            raise CeremonyError(f"unknown payload field(s): {', '.join(map(repr, sorted(unknown)))}")
        roles = {}
        for name, kind in (("trusted_root", Root), ("root", Root), ("targets", Targets)):
            roles[name] = _metadata_from_dict(name, obj.get(name), kind)
        lost = obj.get("old_keys_unavailable", False)
        if not isinstance(lost, bool):
            raise CeremonyError("old_keys_unavailable must be true or false")
        payload = cls(**roles, old_keys_unavailable=lost)
        if payload.root is None and payload.targets is None:
            raise CeremonyError("the payload holds neither a root nor a targets to sign")
        return payload

    @classmethod
    def from_file(cls, path: str | Path) -> Payload:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_PAYLOAD_BYTES + 1)  # never more than the limit, whatever the file
        except OSError as exc:
            raise CeremonyError(f"cannot read payload {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data)

    def to_bytes(self) -> bytes:
        obj: dict[str, Any] = {FORMAT: FORMAT_VERSION}
        for name in ("trusted_root", *OFFLINE_ROLES):
            md = getattr(self, name)
            obj[name] = md.to_dict() if md is not None else None
        if self.old_keys_unavailable:
            obj["old_keys_unavailable"] = True
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()

    def write(self, path: str | Path) -> None:
        """Replace ``path`` atomically: a crash never leaves a half-written, signature-less payload."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(self.to_bytes())
        os.replace(partial, path)

    def role_bytes(self, role: str) -> bytes | None:
        """The role as it will be published (compact JSON), or None if not in the payload."""
        md = getattr(self, role)
        return md.to_bytes(JSONSerializer(compact=True)) if md is not None else None

    # -- who must sign what

    @property
    def root_in_force(self) -> Root | None:
        """The root that will be trusted once the payload is installed (None offline for a
        targets-only payload without its trusted root)."""
        if self.root is not None:
            return self.root.signed
        return self.trusted_root.signed if self.trusted_root else None

    def signing_roots(self, role: str) -> list[tuple[str, Root]]:
        """Each root whose threshold for ``role`` this payload must meet.

        Root N+1 is signed to the thresholds of root N and of itself (as clients
        verify it). A targets signed under new targets keys must also satisfy
        root N's targets keys, so that clients on either root accept it while
        the new root is being published, unless those keys are unavailable.
        """
        in_force = self.root_in_force
        roots = [(f"root v{in_force.version}", in_force)] if in_force is not None else []
        if self.trusted_root is not None and self.root is not None:
            trusted = self.trusted_root.signed
            if role == "root" or (not self.old_keys_unavailable
                                  and _role_keys(trusted, role) != _role_keys(self.root.signed, role)):
                roots.append((f"root v{trusted.version}", trusted))
        if role == "targets":
            # A root trusting the online key for targets is met at install: the index signs with it.
            roots = [(label, root) for label, root in roots if not trust_model.targets_online(root)]
        return roots

    def targets_signed_at_install(self) -> list[str]:
        """The roots (as labels) that trust the online key for this payload's targets: ``tuf install``
        adds the online key's signature for them (a switch of trust model)."""
        if self.targets is None:
            return []
        roots = [self.root, self.trusted_root]
        return [f"root v{md.signed.version}" for md in roots
                if md is not None and trust_model.targets_online(md.signed)]

    def accepted_keys(self, role: str) -> dict[str, Key]:
        keys = {}
        for _, root in self.signing_roots(role):
            for keyid in root.roles[role].keyids:
                keys[keyid] = root.keys[keyid]
        return keys

    def roles(self) -> list[tuple[str, Metadata]]:
        return [(name, getattr(self, name)) for name in OFFLINE_ROLES if getattr(self, name) is not None]

    # -- signing

    def sign(self, uri: str, keyid: str | None = None) -> list[tuple[str, str]]:
        """Add one key's signature to every role of the payload that accepts the key.

        The key is the one the payload lists whose public part verifies a probe
        signature from ``uri``; ``keyid`` skips the search (useful for KMS and HSM
        keys, where each probe is a remote call). Returns (role, keyid) signed.
        """
        candidates: dict[str, Key] = {}
        for role, _ in self.roles():
            candidates.update(self.accepted_keys(role))
        if keyid is not None:
            if keyid not in candidates:
                raise CeremonyError(f"key {keyid[:12]} is not a key this payload asks to sign with")
            candidates = {keyid: candidates[keyid]}
        signer = keyfiles.signer_for(uri, candidates)
        signed = []
        for role, md in self.roles():
            if signer.public_key.keyid in self.accepted_keys(role):
                md.sign(signer, append=True)  # a second signature by one key replaces the first
                signed.append((role, signer.public_key.keyid))
        return signed

    # -- checking

    def digest(self) -> str:
        """One sha256 over the canonical signed part of every role: read aloud at the ceremony."""
        hasher = hashlib.sha256()
        for _, md in self.roles():
            hasher.update(md.signed_bytes)
        return hasher.hexdigest()

    def report(self) -> list[RoleReport]:
        reports = []
        for role, md in self.roles():
            report = RoleReport(role, md.signed.version, md.signed.expires,
                                hashlib.sha256(md.signed_bytes).hexdigest())
            accepted = self.accepted_keys(role)
            for sig_keyid, signature in sorted(md.signatures.items()):
                key = accepted.get(sig_keyid)
                if key is None:
                    state = "unknown key"
                else:
                    try:
                        key.verify_signature(signature, md.signed_bytes)
                        state = "valid"
                    except Exception:  # sslib raises per key type
                        state = "invalid"
                report.signatures.append(SignatureReport(sig_keyid, state))
            for label, root in self.signing_roots(role):
                result = root.get_verification_result(role, md.signed_bytes, md.signatures)
                keyids = root.roles[role].keyids
                report.thresholds.append(ThresholdReport(
                    label, result.threshold, sorted(result.signed),
                    sorted(k for k in keyids if k not in result.signed),
                ))
            reports.append(report)
        return reports

    def problems(self, now: datetime.datetime | None = None) -> list[str]:
        """Everything that stops this payload from being installed; empty when it is ready."""
        now = now or utcnow()
        problems = self.shape_problems()
        for report in self.report():
            name = f"{report.role} v{report.version}"
            if report.expires <= now:
                problems.append(f"{name} expired on {report.expires.isoformat()}")
            for sig in report.signatures:
                if sig.state == "invalid":
                    problems.append(
                        f"{name}: the signature by {sig.keyid[:12]} does not verify "
                        "(was the payload edited after it was signed?)"
                    )
            for t in report.thresholds:
                if not t.met:
                    problems.append(
                        f"{name} is signed by {len(t.signed)} of the {t.threshold} keys "
                        f"{t.label} requires for {report.role}"
                    )
        return problems

    def shape_problems(self) -> list[str]:
        """Version, delegation and key consistency, without looking at signatures."""
        problems = []
        trusted = self.trusted_root.signed if self.trusted_root else None
        if self.root is not None:
            new_root = self.root.signed
            expected = trusted.version + 1 if trusted else 1
            if new_root.version != expected:
                problems.append(f"root version is {new_root.version}, expected {expected}")
            if not new_root.consistent_snapshot:
                problems.append("root must set consistent_snapshot (PEP 458)")
        if trusted is None and self.root is None:
            problems.append("a targets-only payload needs the trusted root it is signed under")
        root = self.root_in_force
        online_model = root is not None and trust_model.targets_online(root)
        if trusted is None and self.targets is None and not online_model:
            problems.append("bootstrap needs root v1 and targets v1 together")
        if (root is not None and online_model and self.targets is not None
                and (trusted is None or trust_model.targets_online(trusted))):
            problems.append(f"root v{root.version} gives targets to the online key: the payload holds root "
                            "only (the index signs targets)")
        if trusted is None and self.targets is not None and self.targets.signed.version != 1:
            problems.append(f"targets version is {self.targets.signed.version}, expected 1")
        if self.targets is not None:
            problems.extend(targets_shape_problems(self.targets.signed))
        if root is not None and self.targets is not None:
            try:
                signing.online_keys(root, self.targets.signed)
            except signing.SigningError as exc:
                problems.append(str(exc))
        elif root is not None and trusted is not None and self.targets is None and not (
                online_model and trust_model.targets_online(trusted)):
            for role in ("targets", "snapshot"):
                if _role_keys(root, role) != _role_keys(trusted, role):
                    what = "targets keys" if role == "targets" else "online key"
                    problems.append(
                        f"root v{root.version} changes the {what}: the payload must also hold the "
                        "next targets (prepare both with 'tuf ceremony prepare')"
                    )
        return problems


def targets_shape_problems(targets: Targets) -> list[str]:
    """What PEP 458 requires of the top-level targets of a warehouse-tuf repository."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    if succinct is None:
        return ["targets must delegate to the bins with succinct_roles (TAP 15)"]
    problems = []
    if not 1 <= succinct.bit_length <= MAX_BIN_BITS:
        problems.append(f"targets delegates to 2**{succinct.bit_length} bins, out of range")
    if targets.targets:
        problems.append("targets must not list targets itself; they belong in the bins")
    return problems


def _role_keys(root: Root, role: str) -> tuple[frozenset[str], int]:
    return frozenset(root.roles[role].keyids), root.roles[role].threshold


def _metadata_from_dict(name: str, obj: object, kind: type[Root] | type[Targets]) -> Metadata | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("signatures"), list):
        raise CeremonyError(f"{name}: not a TUF metadata object (signed and signatures)")
    obj = copy.deepcopy(obj)
    unique: list[Any] = []
    for sig in obj["signatures"]:
        if sig in unique:
            continue  # the very same signature pasted twice counts once
        if isinstance(sig, dict) and any(
            isinstance(u, dict) and u.get("keyid") == sig.get("keyid") for u in unique
        ):
            raise CeremonyError(f"{name}: two different signatures by key {sig.get('keyid')}")
        unique.append(sig)
    obj["signatures"] = unique
    try:
        md = Metadata.from_dict(obj)
        _ = md.signed_bytes  # what signatures cover must be canonical JSON (no floats, say)
    except Exception as exc:  # python-tuf raises ValueError, KeyError, TypeError...
        raise CeremonyError(f"{name}: not valid TUF metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(md.signed, kind):
        raise CeremonyError(f"{name}: expected {kind.type} metadata, found {md.signed.type}")
    if isinstance(md.signed, Root):
        for role_name, role in md.signed.roles.items():
            undefined = sorted(set(role.keyids) - md.signed.keys.keys())
            if undefined:
                raise CeremonyError(f"{name}: its {role_name} role trusts key(s) it does not define: {undefined}")
    return md
