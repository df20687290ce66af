"""Development keys, recognized by what they are, wherever their files lie.

The private keys in ``dev/keys`` are public (committed), and the ones
``bootstrap_development`` generates are plain files; neither may protect a
production index. A key is known by its TUF key id and by its public key
value, so neither a copy of the file, a symlink to it, nor a root that lists
the same public key under another key id gets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import Key
from tuf.api.metadata import Role, Root, Targets

#: Written beside development keys; it lists the key ids of the keys generated there.
MARKER = "INSECURE-DEVELOPMENT-KEYS"

#: The keys committed in ``dev/keys/*.pem``: key id -> ed25519 public key (hex).
#: ``tests/test_devkeys.py`` checks that this list matches those files.
SHIPPED: dict[str, str] = {
    # dev/keys/online.pem
    "43eecfdd880f42b6c0b8f766ce9f305a9e76a6cd590666f5f375f43c38724e1e":
        "752ce13df8b7188e4f34b817527b17f4612cd9e7057004838ad79c4df1e2166e",
    # dev/keys/root.pem
    "3fbcfb746c6331627cff614ce7aa560dea1c25fd6c1d5d0269b47d41e8abe26d":
        "a5cb1237125b3eb638bf9405b25c6986fdd0efb9a8d22426d485e06ad8a34db1",
    # dev/keys/targets.pem
    "dc4e65bb2d364cb842960fdc5bfc9ca66e78c817822496967e7b61f7e63cf8a9":
        "743da2b4e341f5331a873a18030607ed8c6b2fae9747732025a9353f7f6dc266",
}

_MARKER_TEXT = (
    "These keys are for development only. Anyone can read them.\n"
    "warehouse-tuf refuses them when tuf.env is production.\n"
)


@dataclass(frozen=True)
class DevelopmentKeys:
    """Key ids and public key values that production refuses."""

    keyids: frozenset[str]
    publics: frozenset[str]

    def is_development(self, keyid: str, key: Key | None = None) -> bool:
        if keyid in self.keyids:
            return True
        public = key.keyval.get("public") if key is not None else None
        return isinstance(public, str) and _normal(public) in self.publics


def _normal(public: str) -> str:
    """A public key value compared without case or whitespace (hex, or PEM text)."""
    return "".join(public.split()).lower()


def _keys_in(directory: Path) -> tuple[set[str], set[str]]:
    """Key ids and public values of the PEM keys in ``directory``, and the key ids its marker lists."""
    from warehouse_tuf.signing import load_key_file  # signing imports nothing from here

    keyids: set[str] = set()
    publics: set[str] = set()
    if not directory.is_dir():
        return keyids, publics
    for path in sorted(directory.glob("*.pem")):
        try:
            key = load_key_file(path).public_key
        except Exception:  # not a private key we can read: nothing to compare with
            continue
        keyids.add(key.keyid)
        publics.add(_normal(key.keyval["public"]))
    marker = directory / MARKER
    if marker.is_file():
        for line in marker.read_text(errors="replace").splitlines():
            word = line.strip().removeprefix("keyid:").strip()
            if len(word) == 64 and all(c in "0123456789abcdef" for c in word):
                keyids.add(word)
    return keyids, publics


def known(dev_keys_path: str = "") -> DevelopmentKeys:
    """The shipped keys, and every key under ``dev_keys_path`` (when set)."""
    keyids = set(SHIPPED)
    publics = {_normal(public) for public in SHIPPED.values()}
    if dev_keys_path:
        more_ids, more_publics = _keys_in(Path(dev_keys_path))
        keyids |= more_ids
        publics |= more_publics
    return DevelopmentKeys(frozenset(keyids), frozenset(publics))


def record(directory: Path, keys: list[Key]) -> None:
    """Write the marker beside development keys, listing their key ids."""
    marker = directory / MARKER
    text = marker.read_text(errors="replace") if marker.is_file() else _MARKER_TEXT
    missing = [key.keyid for key in keys if key.keyid not in text and key.keyid not in SHIPPED]
    if missing or not marker.is_file():
        marker.write_text(text + "".join(f"keyid: {keyid}\n" for keyid in missing))


def trusted_problems(root: Root, targets: Targets | None, dev: DevelopmentKeys) -> list[str]:
    """One line per role of ``root`` and ``targets`` that trusts a development key."""
    problems = []
    for name in ("root", "targets", "snapshot", "timestamp"):
        role = root.roles.get(name)
        for keyid in sorted(role.keyids if role else ()):
            if dev.is_development(keyid, root.keys.get(keyid)):
                problems.append(f"root v{root.version} trusts development key {keyid[:12]} for {name}")
    delegations = targets.delegations if targets is not None else None
    if targets is not None and delegations is not None:
        roles: list[Role] = [delegations.succinct_roles] if delegations.succinct_roles else []
        roles += list((delegations.roles or {}).values())
        for role in roles:
            for keyid in sorted(role.keyids):
                if dev.is_development(keyid, delegations.keys.get(keyid)):
                    problems.append(f"targets v{targets.version} trusts development key "
                                    f"{keyid[:12]} for its bins")
    return list(dict.fromkeys(problems))
