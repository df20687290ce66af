"""The snapshot's version map, kept encoded between publishes.

A snapshot lists every bin (16,384 in production). Reading all their rows,
building one dict entry each and encoding them costs far more than signing
one bin, on every publish. Only the bins a publish touched change, so each
process keeps the map it last signed, as canonical JSON fragments in sorted
order, and a publish that extends that very snapshot reads only the roles
changed since (``tuf_roles.changed_for_snapshot``).

The rule that keeps it right, whatever other processes (and other versions of
this code) do:

- a kept map is used only when the database's current snapshot is the one this
  process built: same version *and* same sha256. The sha256 covers the map, so
  a match means the map is byte for byte the published one; anything else
  (another process published, a restore, a crash after signing) rebuilds it
  from every row;
- whoever reserves a bin version stamps its row with the snapshot version
  reserved in the same transaction (``changed_for_snapshot``), under the
  publish lock, before the bin is signed. Signing (in process or by a fan-out
  worker of any version) only moves ``version`` of rows so stamped, so the
  roles whose version moved since snapshot N are exactly those with
  ``changed_for_snapshot > N``. A coordinator of an older version stamps
  nothing, but it also publishes a snapshot this process did not build, so
  every newer process rebuilds before relying on stamps again.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping

from warehouse_tuf import canonical

#: Role names written into fragments as they are; any other name goes through the encoder.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_META_PLACEHOLDER = b'"meta":{}'


class SnapshotMetaError(ValueError):
    """A role name or version that cannot be listed in a snapshot."""


def _fragment(filename: str, version: int) -> bytes:
    """``"<filename>":{"version":N}``, as canonical JSON writes that entry of ``meta``."""
    if type(filename) is not str or type(version) is not int:
        raise SnapshotMetaError(f"snapshot entry {filename!r}: version {version!r} is not an integer")
    if _PLAIN_NAME.match(filename):
        return f'"{filename}":{{"version":{version}}}'.encode()
    return canonical.encode({filename: {"version": version}})[1:-1]


class SnapshotMeta:
    """A snapshot's ``meta`` (role file name -> version), encoded one entry at a time.

    Entries are kept in canonical (sorted) order; changing one replaces its
    fragment, so encoding the whole map is a join.
    """

    def __init__(self, versions: Mapping[str, int]) -> None:
        self._index(versions)

    def _index(self, versions: Mapping[str, int]) -> None:
        self._names = sorted(versions)
        self._position = {name: n for n, name in enumerate(self._names)}
        self._fragments = [_fragment(name, versions[name]) for name in self._names]
        self.versions = dict(versions)

    def update(self, versions: Iterable[tuple[str, int]]) -> None:
        """Set the versions of some entries (new names are inserted in order)."""
        added = False
        for filename, version in versions:
            if self.versions.get(filename) == version:
                continue
            fragment = _fragment(filename, version)
            self.versions[filename] = version
            position = self._position.get(filename)
            if position is None:
                added = True
            else:
                self._fragments[position] = fragment
        if added:
            self._index(self.versions)

    def encode(self, signed: dict) -> bytes:
        """The canonical bytes of a snapshot's ``signed``, whose ``meta`` is this map.

        ``signed`` is the rest of it (``Snapshot.to_dict()`` with an empty
        ``meta``); that part is checked and encoded, the entries are spliced in.
        """
        if signed.get("meta") != {}:
            raise SnapshotMetaError("the snapshot's own fields are encoded with an empty meta")
        head = canonical.encode(signed)
        if head.count(_META_PLACEHOLDER) != 1:
            raise SnapshotMetaError("cannot place the meta entries in the encoded snapshot")
        return head.replace(_META_PLACEHOLDER, b'"meta":{' + b",".join(self._fragments) + b"}")


class SnapshotCache:
    """Per process: the last snapshot each repository (database) had signed here, with its map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[str, tuple[int, str, SnapshotMeta]] = {}

    def take(self, repository: str, version: int, sha256: str) -> SnapshotMeta | None:
        """The map of snapshot ``version`` with ``sha256``, if it is the one built here; it leaves the cache.

        Taken, not shared: the caller changes it, and puts it back only once its
        own snapshot is written (:meth:`put`); a publish that fails leaves nothing behind.
        """
        with self._lock:
            built = self._built.pop(repository, None)
        if built is not None and built[:2] == (version, sha256):
            return built[2]
        return None

    def put(self, repository: str, version: int, sha256: str, meta: SnapshotMeta) -> None:
        with self._lock:
            self._built[repository] = (version, sha256, meta)


#: The one cache of this process.
CACHE = SnapshotCache()
