"""Target paths: validation, hash bins, and the simple-page targets of a project."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from warehouse_tuf.models import MAX_TARGET_PATH_BYTES

HEX_LENGTHS = {"sha256": 64, "sha512": 128, "blake2b-256": 64}
_HEX = re.compile(r"^[0-9a-f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Largest target length accepted (1 TiB): a sanity bound, far above PyPI's limits.
MAX_TARGET_LENGTH = 2**40


class InvalidTargetError(ValueError):
    """A target path, length or hash list that must not be signed."""


def validate_path(path: str | bytes) -> str:
    """Return ``path`` if it is a safe relative target path, else raise.

    Relative, '/'-separated, no '.', '..' or empty segment, no backslash, no
    control character, valid UTF-8, at most MAX_TARGET_PATH_BYTES bytes.
    """
    if isinstance(path, bytes):
        try:
            path = path.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidTargetError(f"target path {path[:80]!r} is not valid UTF-8") from None
    if not isinstance(path, str):
        raise InvalidTargetError(f"target path must be a string, not {type(path).__name__}")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTargetError(f"target path {path[:80]!r} is not valid UTF-8") from None
    shown = path[:80] + ("…" if len(path) > 80 else "")
    if not path:
        raise InvalidTargetError("target path is empty")
    if len(encoded) > MAX_TARGET_PATH_BYTES:
        raise InvalidTargetError(
            f"target path {shown!r} is {len(encoded)} bytes, the limit is {MAX_TARGET_PATH_BYTES}"
        )
    if path.startswith("/"):
        raise InvalidTargetError(f"target path {shown!r} is absolute")
    if "\\" in path:
        raise InvalidTargetError(f"target path {shown!r} contains a backslash")
    if _CONTROL.search(path):
        raise InvalidTargetError(f"target path {shown!r} contains a control character")
    for segment in path.split("/"):
        if segment == "":
            raise InvalidTargetError(f"target path {shown!r} has an empty segment")
        if segment in (".", ".."):
            raise InvalidTargetError(f"target path {shown!r} has a {segment!r} segment")
    return path


def validate_hashes(path: str, hashes: dict[str, str], algorithms: tuple[str, ...]) -> dict[str, str]:
    """The configured ``algorithms`` of ``hashes``, lowercase hex, each checked."""
    if not isinstance(hashes, dict):
        raise InvalidTargetError(f"target {path!r}: hashes must be a mapping")
    checked = {}
    for name in algorithms:
        value = hashes.get(name)
        if value is None:
            raise InvalidTargetError(f"target {path!r} has no {name} hash")
        value = str(value).lower()
        if len(value) != HEX_LENGTHS[name] or not _HEX.match(value):
            raise InvalidTargetError(f"target {path!r}: {name} hash {value[:80]!r} is not valid hex")
        checked[name] = value
    return checked


def validate_length(path: str, length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= MAX_TARGET_LENGTH:
        raise InvalidTargetError(f"target {path!r}: length {length!r} is not a valid size")
    return length


def file_hashes(file: Any) -> dict[str, str]:
    """The hashes a host ``File`` row carries, under their TUF names."""
    return {"sha256": file.sha256_digest.lower(), "blake2b-256": file.blake2_256_digest.lower()}


def bin_index(path: str, bits: int) -> int:
    """The hash bin of ``path``: the first ``bits`` bits of sha256(path), as in TAP 15."""
    digest = hashlib.sha256(path.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - bits)


def bin_name(index: int, bits: int, prefix: str) -> str:
    """The TAP 15 role name of bin ``index``: ``<prefix>-<zero-padded hex>``."""
    width = len(f"{2**bits - 1:x}")
    return f"{prefix}-{index:0{width}x}"


@dataclass(frozen=True)
class BinLayout:
    """TAP 15 succinct hash bins: ``2**bits`` bins named ``<prefix>-<hex>``."""

    bits: int
    prefix: str

    @property
    def count(self) -> int:
        return 2**self.bits

    def index(self, path: str) -> int:
        return bin_index(path, self.bits)

    def name(self, index: int) -> str:
        return bin_name(index, self.bits, self.prefix)


def hash_data(data: bytes, algorithms: tuple[str, ...]) -> dict[str, str]:
    hashes = {}
    for name in algorithms:
        if name == "blake2b-256":
            hashes[name] = hashlib.blake2b(data, digest_size=32).hexdigest()
        else:
            hashes[name] = hashlib.new(name, data).hexdigest()
    return hashes


@dataclass(frozen=True)
class SimplePages:
    """A project's simple detail page in both forms, exactly the bytes that are served."""

    html: bytes
    json: bytes


def page_paths(project: str) -> dict[str, str]:
    """Target paths of a project's simple pages: ``<name>/<name>.html`` and ``.json``."""
    validate_path(f"{project}/{project}.html")
    return {"html": f"{project}/{project}.html", "json": f"{project}/{project}.json"}


def prefixed_name(path: str, digest: str) -> str:
    """Where a consistent-snapshot client fetches ``path``: ``<dir>/<digest>.<name>``."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/{digest}.{name}" if directory else f"{digest}.{name}"
