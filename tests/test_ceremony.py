"""The offline ceremony end to end, through the ``tuf`` CLI, checked by ngclient clients.

3 root keys (threshold 2), 2 targets keys (threshold 2), one online key; each
holder signs from a key file of their own. Then a root rotation, an online
key rotation with uploads pending, and a targets renewal; after each step a
client that trusted the previous state updates and verifies targets.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, CryptoSigner, Signer
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import Metadata

from dev.testing.tufclient import Client
from tests.conftest import make_configurator
from tests.keyholders import make_holder, next_payload, public_key, run, v1_payload
from warehouse_tuf import ceremony, keyfiles
from warehouse_tuf.cli import service


@pytest.fixture
def holders(tmp_path):
    names = ["root1", "root2", "root3", "root4", "targets1", "targets2", "online1", "online2"]
    return {name: make_holder(tmp_path, name) for name in names}


def add_upload(config, targets_dir, name: str, data: bytes) -> str:
    """Store a file and record it in a committed host transaction; returns its target path."""
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = f"{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/{name}"
    (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (targets_dir / path).write_bytes(data)
    with service(config) as manager:
        manager.record_target(path, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        manager.db.commit()
    return path


def published(metadata_dir, role: str) -> dict:
    versions = sorted(int(p.name.split(".")[0]) for p in metadata_dir.glob(f"*.{role}.json"))
    return json.loads((metadata_dir / f"{versions[-1]}.{role}.json").read_bytes())


def test_full_ceremony_bootstrap_rotations_and_renewal(engine, tmp_path, holders):
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    payload = tmp_path / "ceremony" / "v1.json"
    payload.parent.mkdir()

    # Offline: the payload is written from public keys only, no host configured.
    run(None, "ceremony", "init",
        "--root-key", h["root1"].public, "--root-key", h["root2"].public,
        "--root-key", h["root3"].public, "--root-threshold", 2,
        "--targets-key", h["targets1"].public, "--targets-key", h["targets2"].public,
        "--targets-threshold", 2, "--online-key", h["online1"].public, "--bin-count", 16,
        "-o", payload)
    verify = run(None, "ceremony", "verify", payload, ok=False)
    assert "not ready" in verify.output and "signed 0" in verify.output
    digest = verify.output.split("read aloud): ")[1][:19]  # the first groups, as read aloud
    for name in ("root1", "targets1", "root3", "targets2"):  # one after another, each their own key
        result = run(None, "ceremony", "sign", payload, "--key", h[name].uri, "--expect-digest", digest)
        assert f"with key {h[name].keyid[:12]}\n" in result.output
    assert "ready to install" in run(None, "ceremony", "verify", payload).output

    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online1"].uri})
    run(config, "bootstrap", payload)
    first = add_upload(config, targets_dir, "first-1.0.tar.gz", b"first")
    run(config, "publish")
    client = Client(metadata_dir, targets_dir)
    assert client.download(first) == b"first"

    # Root rotation: replace root3 by root4 and raise the threshold to 3.
    current_root = metadata_dir / "1.root.json"
    current_targets = metadata_dir / "1.targets.json"
    rotate = tmp_path / "ceremony" / "root-v2.json"
    run(None, "ceremony", "prepare", "--root", current_root, "--targets", current_targets,
        "--add-root-key", h["root4"].public, "--remove-root-key", h["root3"].keyid,
        "--root-threshold", 3, "-o", rotate)
    for name in ("root1", "root2"):
        run(None, "ceremony", "sign", rotate, "--key", h[name].uri)
    # root v2 has 2 of its 3 signatures: not yet installable.
    assert "root v2 is signed by 2 of the 3 keys root v2 requires" in run(config, "install", rotate, ok=False).output
    run(None, "ceremony", "sign", rotate, "--key", h["root4"].uri)
    run(config, "install", rotate)
    assert client.download(first) == b"first"
    assert json.loads((client.cache / "root.json").read_bytes())["signed"]["version"] == 2

    # Online key rotation while uploads wait to be published.
    pending = add_upload(config, targets_dir, "pending-1.0.tar.gz", b"pending")
    online = tmp_path / "ceremony" / "online.json"
    run(None, "ceremony", "prepare", "--root", metadata_dir / "2.root.json", "--targets", current_targets,
        "--online-key", h["online2"].public, "-o", online)
    for name in ("root1", "root2", "root4", "targets1", "targets2"):
        run(None, "ceremony", "sign", online, "--key", h[name].uri)
    run(config, "install", online,
        "--online-signer", h["online1"].signer_entry, "--online-signer", h["online2"].signer_entry)
    assert client.download(first) == b"first"
    assert json.loads((client.cache / "root.json").read_bytes())["signed"]["version"] == 3
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    assert set(timestamp.signatures) == {h["online2"].keyid}

    # Workers now sign with the new key only; the pending upload is published.
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online2"].uri})
    with service(config) as manager:
        assert manager.status()["pending"] == 1
    run(config, "publish")
    assert client.download(pending) == b"pending"

    # Targets renewed before its expiry, with the same one-at-a-time signing.
    renew = tmp_path / "ceremony" / "targets-v3.json"
    run(None, "ceremony", "prepare", "--root", metadata_dir / "3.root.json",
        "--targets", metadata_dir / "2.targets.json", "--targets-expiry", "400d", "-o", renew)
    for name in ("targets2", "targets1"):
        run(None, "ceremony", "sign", renew, "--key", h[name].uri)
    run(config, "install", renew)
    assert published(metadata_dir, "targets")["signed"]["version"] == 3
    assert client.download(pending) == b"pending"
    # Every root stays published.
    assert sorted(p.name for p in metadata_dir.glob("*.root.json")) == [
        "1.root.json", "2.root.json", "3.root.json"
    ]
    # And the client still refuses a tampered file.
    (targets_dir / pending).write_bytes(b"pendinG")
    with pytest.raises(LengthOrHashMismatchError):
        client.download(pending)


# -- bad inputs: a clear one-line error, and nothing changes --------------------------


def repository_state(engine, metadata_dir) -> tuple:
    """Every role row and every stored file: equal before and after a refused command."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from warehouse_tuf.models import PendingChange, RoleVersion, Target

    with Session(engine) as session:
        roles = sorted((r.name, r.version, r.reserved_version, r.sha256) for r in session.scalars(select(RoleVersion)))
        targets = sorted(t.path for t in session.scalars(select(Target)))
        pending = sorted(c.id for c in session.scalars(select(PendingChange)))
    files = {p.name: p.read_bytes() for p in metadata_dir.iterdir()} if metadata_dir.exists() else {}
    return roles, targets, pending, files


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    return message


def edited(payload: ceremony.Payload, edit) -> bytes:
    """The payload's JSON after ``edit(obj)``: what a careless or hostile hand produces."""
    obj = json.loads(payload.to_bytes())
    edit(obj)
    return json.dumps(obj).encode()


def resign(payload_bytes: bytes, h, names) -> bytes:
    payload = ceremony.Payload.from_bytes(payload_bytes)
    for _, md in payload.roles():
        md.signatures.clear()
    for name in names:
        payload.sign(h[name].uri)
    return payload.to_bytes()


def _set(path: str, value):
    def edit(obj):
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    return edit


@pytest.fixture
def host(engine, tmp_path, holders):
    """The index, online key online1; and an outsider whose key no role lists."""
    holders["outsider"] = make_holder(tmp_path, "outsider")
    return make_configurator(engine, tmp_path, **{"tuf.online_signers": holders["online1"].signer_entry})


PAST = "2020-01-01T00:00:00Z"
ALL_V1 = ("root1", "root2", "targets1", "targets2")

#: (name, payload bytes from the holders, expected words of the one-line error)
BOOTSTRAP_CASES = [
    ("malformed JSON", lambda h: b'{"warehouse_tuf_ceremony": 1, "root": {', "not valid JSON"),
    ("not a payload", lambda h: json.dumps({"signed": {}, "signatures": []}).encode(),
     "not a warehouse-tuf ceremony payload"),
    ("unknown field", lambda h: edited(v1_payload(h), _set("extra", 1)), "unknown payload field"),
    ("unknown key type", lambda h: edited(v1_payload(h), lambda o: next(iter(o["root"]["signed"]["keys"].values())).update(keytype="quantum")),
     "Unsupported public key quantum"),
    ("root threshold not met", lambda h: v1_payload(h, sign=("root1", "targets1", "targets2")).to_bytes(),
     "root v1 is signed by 1 of the 2 keys root v1 requires for root"),
    ("targets threshold not met", lambda h: v1_payload(h, sign=("root1", "root2", "targets2")).to_bytes(),
     "targets v1 is signed by 1 of the 2 keys root v1 requires for targets"),
    ("signature by a key root does not list", lambda h: edited(
        v1_payload(h, sign=("root1", "targets1", "targets2")),
        lambda o: o["root"]["signatures"].append({"keyid": h["outsider"].keyid, "sig": "00" * 64})),
     "root v1 is signed by 1 of the 2 keys"),
    ("the same signature twice counts once", lambda h: edited(
        v1_payload(h, sign=("root1", "targets1", "targets2")),
        lambda o: o["root"]["signatures"].append(dict(o["root"]["signatures"][0]))),
     "root v1 is signed by 1 of the 2 keys"),
    ("two signatures by one key", lambda h: edited(
        v1_payload(h), lambda o: o["root"]["signatures"].append({"keyid": o["root"]["signatures"][0]["keyid"], "sig": "11" * 64})),
     "two different signatures by key"),
    ("payload edited after signing", lambda h: edited(v1_payload(h), _set("root.signed.roles.root.threshold", 1)),
     "does not verify (was the payload edited after it was signed?)"),
    ("root expiry in the past", lambda h: resign(edited(v1_payload(h, sign=()), _set("root.signed.expires", PAST)), h, ALL_V1),
     "root v1 expired on 2020-01-01"),
    ("targets expiry in the past", lambda h: resign(edited(v1_payload(h, sign=()), _set("targets.signed.expires", PAST)), h, ALL_V1),
     "targets v1 expired on 2020-01-01"),
    ("root version not 1", lambda h: resign(edited(v1_payload(h, sign=()), _set("root.signed.version", 2)), h, ALL_V1),
     "root version is 2, expected 1"),
    ("online key mismatch", lambda h: resign(edited(v1_payload(h, sign=()), lambda o: o["targets"]["signed"]["delegations"].update(
        keys={h["outsider"].keyid: keyfiles.load_public_key(h["outsider"].public).to_dict()},
        succinct_roles={**o["targets"]["signed"]["delegations"]["succinct_roles"], "keyids": [h["outsider"].keyid]})), h, ALL_V1),
     "must trust the same online key(s)"),
    ("no consistent snapshots", lambda h: resign(edited(v1_payload(h, sign=()), _set("root.signed.consistent_snapshot", False)), h, ALL_V1),
     "consistent_snapshot"),
    ("targets listing targets", lambda h: resign(edited(v1_payload(h, sign=()), _set("targets.signed.targets", {"a/b": {"length": 1, "hashes": {"sha256": "00" * 32}}})), h, ALL_V1),
     "must not list targets itself"),
    ("root without targets", lambda h: edited(v1_payload(h), _set("targets", None)), "bootstrap needs root v1 and targets v1 together"),
    ("bin count unlike the settings", lambda h: v1_payload(h, bins=32).to_bytes(),
     "targets delegates to 32 bins but the settings ask for 16"),
]


@pytest.mark.one_database
@pytest.mark.parametrize("case", BOOTSTRAP_CASES, ids=[c[0] for c in BOOTSTRAP_CASES])
def test_bad_bootstrap_payload_is_refused_and_changes_nothing(case, engine, tmp_path, holders, host):
    _, make, words = case
    payload = tmp_path / "payload.json"
    payload.write_bytes(make(holders))
    before = repository_state(engine, tmp_path / "metadata")
    message = one_line_error(run(host, "bootstrap", payload, ok=None))
    assert words in message
    assert repository_state(engine, tmp_path / "metadata") == before
    assert not (tmp_path / "metadata").exists() or not any((tmp_path / "metadata").iterdir())


def _init_args(h, **change):
    args = {"--root-key": [h["root1"].public, h["root2"].public, h["root3"].public], "--root-threshold": [2],
            "--targets-key": [h["targets1"].public, h["targets2"].public], "--targets-threshold": [2],
            "--online-key": [h["online1"].public], "--bin-count": [16]}
    args.update(change)
    return [str(a) for option, values in args.items() for value in values for a in (option, value)]


def _json_key_file(tmp_path, keytype: str):
    path = tmp_path / "odd-key.json"
    path.write_text(json.dumps({"keytype": keytype, "scheme": "ed25519", "keyval": {"public": "ab" * 32}}))
    return path


def _spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("{root_key: [")
    return path


INIT_CASES = [
    ("bin count not a power of two", lambda h, t: _init_args(h, **{"--bin-count": [100]}), "must be a power of two"),
    ("threshold above the key count", lambda h, t: _init_args(h, **{"--root-threshold": [4]}),
     "threshold 4 must be from 1 to the number of keys (3)"),
    ("threshold zero", lambda h, t: _init_args(h, **{"--targets-threshold": [0]}), "threshold 0 must be from 1"),
    ("unknown key type", lambda h, t: _init_args(h, **{"--online-key": [_json_key_file(t, "quantum")]}),
     "unsupported key type 'quantum'"),
    ("a private key handed around", lambda h, t: _init_args(h, **{"--online-key": [h["online1"].private]}),
     "holds a private key: give the public key only"),
    ("the same key twice", lambda h, t: _init_args(h, **{"--targets-key": [h["targets1"].public, h["targets1"].public]}),
     "the same key is given twice"),
    ("a missing key file", lambda h, t: _init_args(h, **{"--root-key": [t / "nowhere.pem"]}), "cannot read key file"),
    ("a spec file that is not JSON", lambda h, t: ["--spec", str(_spec_file(t))], "cannot read"),
]


@pytest.mark.parametrize("case", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_bad_init_input_is_refused_and_writes_nothing(case, tmp_path, holders):
    _, make, words = case
    output = tmp_path / "payload.json"
    result = run(None, "ceremony", "init", *make(holders, tmp_path), "-o", output, ok=None)
    assert result.exit_code != 0
    message = result.stderr.strip().splitlines()[-1]
    assert words in message, result.output
    assert not output.exists()


SIGN_CASES = [
    ("a key the payload does not list", lambda h: ["--key", h["outsider"].uri],
     "the key in {outsider} (key id {outsider_id}) is not one this payload asks to sign with (it asks for: "),
    ("a key id the payload does not list", lambda h: ["--key", h["root1"].uri, "--keyid", h["outsider"].keyid],
     "is not a key this payload asks to sign with"),
    ("a key that is not the key id given", lambda h: ["--key", h["root1"].uri, "--keyid", h["root2"].keyid],
     "the key in {root1} (key id {root1_id}) is not one this payload asks"),
    ("a digest other than the one read aloud",
     lambda h: ["--key", h["root1"].uri, "--expect-digest", "0000 1111 2222 3333"],
     "not the one read aloud: do not sign"),
    ("a missing private key", lambda h: ["--key", "file2:/nonexistent/key.pem"],
     "cannot read the key file /nonexistent/key.pem: No such file or directory"),
    ("a missing key given as a plain relative path", lambda h: ["--key", "keys/missing.pem"],
     "cannot read the key file {cwd}/keys/missing.pem: No such file or directory"),
    ("a public key file", lambda h: ["--key", str(h["root1"].public)],
     "{root1_public} holds a public key: sign with your private key file"),
    ("a public key file as a file: URI", lambda h: ["--key", f"file:{h['root1'].public}"],
     "{root1_public} holds a public key"),
    ("a file that holds no key", lambda h: ["--key", str(h["root1"].public.parent.parent / "payload.json")],
     "holds no private key this tool can read"),
]


@pytest.mark.parametrize("case", SIGN_CASES, ids=[c[0] for c in SIGN_CASES])
def test_bad_signing_is_refused_and_leaves_the_payload_unchanged(case, tmp_path, holders):
    _, make, words = case
    holders["outsider"] = make_holder(tmp_path, "outsider")
    payload = tmp_path / "payload.json"
    payload.write_bytes(v1_payload(holders, sign=("root2",)).to_bytes())
    before = payload.read_bytes()
    words = words.format(outsider=holders["outsider"].private, outsider_id=holders["outsider"].keyid[:12],
                         root1=holders["root1"].private, root1_id=holders["root1"].keyid[:12],
                         root1_public=holders["root1"].public, cwd=Path.cwd())
    assert words in one_line_error(run(None, "ceremony", "sign", payload, *make(holders), ok=None))
    assert payload.read_bytes() == before


def test_sign_takes_a_plain_path_and_needs_four_digest_groups(tmp_path, holders):
    payload = tmp_path / "payload.json"
    payload.write_bytes(v1_payload(holders, sign=()).to_bytes())
    digest = ceremony.Payload.from_file(payload).digest()
    short = run(None, "ceremony", "sign", payload, "--key", holders["root1"].private,
                "--expect-digest", f"{digest[:4]} {digest[4:8]} {digest[8:12]}", ok=False)
    assert short.exit_code == 2 and "has 3 group(s): give at least 4 groups" in short.output
    assert ceremony.Payload.from_file(payload).digest() == digest and b'"sig"' not in payload.read_bytes()
    signed = run(None, "ceremony", "sign", payload, "--key", holders["root1"].private,
                 "--expect-digest", ceremony.read_aloud(digest[:16]))
    assert f"signed root with key {holders['root1'].keyid[:12]}" in signed.output


def _next(h, metadata_dir, *, root_names=(), targets_names=(), **changes) -> ceremony.Payload:
    return next_payload(h, metadata_dir, (*root_names, *targets_names), **changes)


INSTALL_CASES = [
    ("root version not N+1", lambda h, m: resign(edited(_next(h, m, root_expiry=datetime.timedelta(days=30)),
                                                        _set("root.signed.version", 3)), h, ("root1", "root2")),
     "root version is 3, expected 2"),
    ("new root not signed by the old root's threshold", lambda h, m: _next(
        h, m, add_root_keys=[public_key(h, "root4"), public_key(h, "outsider")], root_threshold=2,
        remove_root_keys=[h["root1"].keyid, h["root2"].keyid], root_names=("root4", "outsider")).to_bytes(),
     "root v2 is signed by 0 of the 2 keys root v1 requires for root"),
    ("new root not signed by its own threshold", lambda h, m: _next(
        h, m, add_root_keys=[public_key(h, "root4")], root_threshold=3, root_names=("root1", "root2")).to_bytes(),
     "root v2 is signed by 2 of the 3 keys root v2 requires for root"),
    ("online key changed in root but not in targets", lambda h, m: edited(
        _next(h, m, online_keys=[public_key(h, "online2")], root_names=("root1", "root2")), _set("targets", None)),
     "changes the online key: the payload must also hold the next targets"),
    ("targets version not M+1", lambda h, m: resign(edited(_next(h, m, targets_expiry=datetime.timedelta(days=30)),
                                                          _set("targets.signed.version", 5)), h, ("targets1", "targets2")),
     "targets version is 5, expected 2"),
    ("renewed targets expiring in the past", lambda h, m: resign(edited(
        _next(h, m, targets_expiry=datetime.timedelta(days=30)), _set("targets.signed.expires", PAST)), h, ("targets1", "targets2")),
     "targets v2 expired on 2020-01-01"),
    ("a bootstrap payload", lambda h, m: v1_payload(h).to_bytes(), "this payload is a bootstrap payload"),
    ("online key rotation without the new key's signer", lambda h, m: _next(
        h, m, online_keys=[public_key(h, "online2")], root_names=("root1", "root2"), targets_names=("targets1", "targets2")).to_bytes(),
     "rotating the online key needs signers for the old and the new key(s): 0 configured for the new one(s)"),
]


@pytest.mark.one_database
@pytest.mark.parametrize("case", INSTALL_CASES, ids=[c[0] for c in INSTALL_CASES])
def test_bad_install_payload_is_refused_and_changes_nothing(case, engine, tmp_path, holders, host):
    _, make, words = case
    bootstrap = tmp_path / "v1.json"
    bootstrap.write_bytes(v1_payload(holders).to_bytes())
    run(host, "bootstrap", bootstrap)
    payload = tmp_path / "next.json"
    payload.write_bytes(make(holders, tmp_path / "metadata"))
    before = repository_state(engine, tmp_path / "metadata")
    assert words in one_line_error(run(host, "install", payload, ok=None))
    assert repository_state(engine, tmp_path / "metadata") == before


def test_init_takes_its_values_from_a_spec_file_and_options_win(tmp_path, holders):
    h = holders
    spec = tmp_path / "ceremony.json"
    spec.write_text(json.dumps({
        "root_key": [str(h[n].public) for n in ("root1", "root2", "root3")], "root_threshold": 2,
        "targets_key": [str(h["targets1"].public)], "targets_threshold": 1,
        "online_key": [str(h["online1"].public)], "bin_count": 256,
    }))
    run(None, "ceremony", "init", "--spec", spec, "--bin-count", 16, "-o", tmp_path / "p.json")
    payload = ceremony.Payload.from_file(tmp_path / "p.json")
    root = payload.root.signed
    assert set(root.roles["root"].keyids) == {h[n].keyid for n in ("root1", "root2", "root3")}
    assert root.roles["root"].threshold == 2 and root.roles["targets"].keyids == [h["targets1"].keyid]
    assert payload.targets.signed.delegations.succinct_roles.bit_length == 4  # --bin-count 16 won
    assert payload.shape_problems() == [] and len(payload.problems()) == 2  # unsigned root and targets


class RemoteKMSSigner(Signer):
    """Stands in for a cloud KMS (awskms:, gcpkms:, ...), which cannot run here.

    The private key stays "in the service" (a dict); only signatures come back.
    A refused call raises an error whose message carries a credential, as real
    SDK errors sometimes do: it must not reach the output.
    """

    SCHEME = "testkms"
    keys: dict[str, CryptoSigner] = {}
    calls: list[str] = []

    def __init__(self, name: str, public_key) -> None:
        self.name, self._public_key = name, public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
        return cls(priv_key_uri.partition(":")[2], public_key)

    @property
    def public_key(self):
        return self._public_key

    def sign(self, payload: bytes):
        self.calls.append(self.name)
        signer = self.keys.get(self.name)
        if signer is None or signer.public_key.keyid != self._public_key.keyid:
            raise PermissionError("AccessDenied for credential AKIA-SECRET-TOKEN")
        return signer.sign(payload)


def test_signing_with_a_remote_key_uri(tmp_path, holders, monkeypatch):
    monkeypatch.setitem(SIGNER_FOR_URI_SCHEME, RemoteKMSSigner.SCHEME, RemoteKMSSigner)
    monkeypatch.setattr(RemoteKMSSigner, "keys", {
        name: CryptoSigner(load_pem_private_key(holders[name].private.read_bytes(), None))
        for name in ("root1", "targets1")
    })
    monkeypatch.setattr(RemoteKMSSigner, "calls", [])
    payload = tmp_path / "payload.json"
    payload.write_bytes(v1_payload(holders, sign=()).to_bytes())
    # With --keyid only that key is tried: a probe signature, then the signature.
    run(None, "ceremony", "sign", payload, "--key", "testkms:root1", "--keyid", holders["root1"].keyid)
    assert RemoteKMSSigner.calls == ["root1", "root1"]
    # Without: the key is found among the payload's keys by probing.
    result = run(None, "ceremony", "sign", payload, "--key", "testkms:targets1")
    assert f"signed targets with key {holders['targets1'].keyid[:12]}\n" in result.output
    signed = {role: set(md.signatures) for role, md in ceremony.Payload.from_file(payload).roles()}
    assert signed == {"root": {holders["root1"].keyid}, "targets": {holders["targets1"].keyid}}
    # A refused call is reported by type only.
    message = one_line_error(run(None, "ceremony", "sign", payload, "--key", "testkms:root2",
                                 "--keyid", holders["root2"].keyid, ok=None))
    assert "PermissionError" in message and "SECRET" not in message


# -- the targets-online trust model (tuf.targets_online) ---------------------------------


def test_targets_online_ceremony_rotation_and_switches_both_ways(engine, tmp_path, holders):
    """Root is the only offline role; then PEP 458's offline targets and back, each by 'tuf install'.
    After every step, a client holding the previous state updates and verifies a download."""
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    ceremony_dir = tmp_path / "ceremony"
    ceremony_dir.mkdir()

    def host(online: bool, *signers: str):
        return make_configurator(engine, tmp_path, **{"tuf.online_signers": " ".join(signers) or h["online1"].uri,
                                                      "tuf.targets_online": str(online).lower()})

    def newest(role: str) -> Path:
        return max(metadata_dir.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))

    def signatures(role: str) -> set[str]:
        return {sig["keyid"] for sig in published(metadata_dir, role)["signatures"]}

    def status(config) -> dict:
        return json.loads(run(config, "status", "--json").output)

    v1 = ceremony_dir / "v1.json"
    run(None, "ceremony", "init", "--root-key", h["root1"].public, "--root-key", h["root2"].public,
        "--root-key", h["root3"].public, "--root-threshold", 2, "--targets-online",
        "--online-key", h["online1"].public, "--bin-count", 16, "-o", v1)
    verify = run(None, "ceremony", "verify", v1, ok=False).output
    assert "root v1 asks 2 of 3 root keys" in verify and "targets v1" not in verify
    assert "trust model: targets online" in verify
    for name in ("root1", "root2"):
        run(None, "ceremony", "sign", v1, "--key", h[name].uri)
    config = host(True)
    run(config, "bootstrap", v1)
    assert signatures("targets") == {h["online1"].keyid}
    first = add_upload(config, targets_dir, "first-1.0.tar.gz", b"first")
    run(config, "publish")
    client = Client(metadata_dir, targets_dir)
    assert client.download(first) == b"first"
    report = status(config)
    assert report["trust_model"]["name"] == "targets-online" and not report["problems"]
    text = run(config, "status").output
    assert "trust model: targets online" in text and "compromised online key also compromises targets" in text

    # Online key rotation: root v2 alone; the index signs targets v2 (both keys), then v3 (the new key).
    rotate = ceremony_dir / "online.json"
    run(None, "ceremony", "prepare", "--root", newest("root"), "--targets", newest("targets"),
        "--online-key", h["online2"].public, "-o", rotate)
    for name in ("root1", "root2"):
        run(None, "ceremony", "sign", rotate, "--key", h[name].uri)
    run(config, "install", rotate, "--online-signer", h["online1"].signer_entry,
        "--online-signer", h["online2"].signer_entry)
    assert client.download(first) == b"first"
    assert signatures("targets") == {h["online2"].keyid}
    config = host(True, h["online2"].uri)

    # To PEP 458: root v3 gives targets to two offline keys; they sign targets v4, the index adds online2.
    to_pep = ceremony_dir / "to-pep.json"
    run(None, "ceremony", "prepare", "--root", newest("root"), "--targets", newest("targets"), "--targets-offline",
        "--add-targets-key", h["targets1"].public, "--add-targets-key", h["targets2"].public,
        "--targets-threshold", 2, "-o", to_pep)
    for name in ("root1", "root2", "targets1", "targets2"):
        run(None, "ceremony", "sign", to_pep, "--key", h[name].uri)
    verify = run(None, "ceremony", "verify", to_pep).output
    assert "ready to install" in verify
    assert "root v2 trusts the online key for targets: 'tuf install' adds its signature" in verify
    refused = run(config, "install", to_pep, ok=None)  # the setting still asks for targets online
    assert "keeps targets offline (targets keys) but tuf.targets_online is true" in one_line_error(refused)
    config = host(False, h["online2"].uri)
    run(config, "install", to_pep)
    assert signatures("targets") == {h[n].keyid for n in ("targets1", "targets2", "online2")}
    second = add_upload(config, targets_dir, "second-1.0.tar.gz", b"second")
    run(config, "publish")
    assert client.download(second) == b"second"
    assert status(config)["trust_model"]["name"] == "pep458"
    # Refresh never re-signs offline targets.
    with service(config) as manager:
        manager.refresh(datetime.timedelta(days=400))
    assert published(metadata_dir, "targets")["signed"]["version"] == 4

    # And back to targets online: the targets keys sign targets v5 once more, for clients on root v3.
    to_online = ceremony_dir / "to-online.json"
    run(None, "ceremony", "prepare", "--root", newest("root"), "--targets", newest("targets"),
        "--targets-online", "-o", to_online)
    for name in ("root1", "root2", "targets1", "targets2"):
        run(None, "ceremony", "sign", to_online, "--key", h[name].uri)
    refused = run(config, "install", to_online, ok=None)
    assert "gives targets to the online key but tuf.targets_online is false" in one_line_error(refused)
    config = host(True, h["online2"].uri)
    run(config, "install", to_online)
    assert client.download(second) == b"second"
    assert json.loads((client.cache / "root.json").read_bytes())["signed"]["version"] == 4
    # Refresh now renews targets before it expires, signed by the online key alone.
    with service(config) as manager:
        manager.refresh(datetime.timedelta(days=400))
    assert published(metadata_dir, "targets")["signed"]["version"] == 6
    assert signatures("targets") == {h["online2"].keyid}
    assert client.download(first) == b"first"
    fresh = Client(metadata_dir, targets_dir)  # a new client walks every root from 1.root.json
    assert fresh.download(second) == b"second"
    assert status(config)["trust_model"]["name"] == "targets-online"


@pytest.mark.parametrize("setting", [True, False], ids=["targets-online setting", "pep458 setting"])
def test_a_payload_of_the_other_trust_model_is_refused_and_changes_nothing(setting, engine, tmp_path, holders):
    h = holders
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                                    "tuf.targets_online": str(setting).lower()})
    wrong = tmp_path / "wrong-model.json"
    wrong.write_bytes(v1_payload(h, targets_online=not setting).to_bytes())
    before = repository_state(engine, tmp_path / "metadata")
    message = one_line_error(run(config, "bootstrap", wrong, ok=None))
    expected = ("root v1 keeps targets offline (targets keys) but tuf.targets_online is true" if setting
                else "root v1 gives targets to the online key but tuf.targets_online is false")
    assert expected in message
    assert repository_state(engine, tmp_path / "metadata") == before

    if setting:  # a root-only payload that carries a targets all the same
        both = v1_payload(h, targets_online=True)
        both.targets = v1_payload(h).targets
        wrong.write_bytes(both.to_bytes())
        message = one_line_error(run(config, "bootstrap", wrong, ok=None))
        assert "root v1 gives targets to the online key: the payload holds root only" in message
        assert repository_state(engine, tmp_path / "metadata") == before

    right = tmp_path / "right-model.json"
    right.write_bytes(v1_payload(h, targets_online=setting).to_bytes())
    run(config, "bootstrap", right)
    before = repository_state(engine, tmp_path / "metadata")
    switch = next_payload(h, tmp_path / "metadata", ("root1", "root2", "targets1", "targets2"),
                          targets_online=not setting,
                          **({"add_targets_keys": [public_key(h, "targets1"), public_key(h, "targets2")],
                              "targets_threshold": 2} if setting else {}))
    payload = tmp_path / "switch.json"
    payload.write_bytes(switch.to_bytes())
    message = one_line_error(run(config, "install", payload, ok=None))
    assert expected.replace("root v1", "root v2") in message
    assert repository_state(engine, tmp_path / "metadata") == before
