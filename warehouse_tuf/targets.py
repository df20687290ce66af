"""Target paths: validation, hash bins, and the simple-page targets of a project."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

#: Longest accepted target path, in UTF-8 bytes (keeps it indexable everywhere).
MAX_TARGET_PATH_BYTES = 1024
#: The most bins a repository may delegate to (2**20).
MAX_BIN_BITS = 20
HEX_LENGTHS = {"sha256": 64, "sha512": 128, "blake2b-256": 64}
_HEX = re.compile(r"^[0-9a-f]+$")
#: Largest target length accepted (1 TiB): a sanity bound, far above PyPI's limits.
MAX_TARGET_LENGTH = 2**40
#: Longest path segment: what common filesystems allow for one name.
MAX_SEGMENT_BYTES = 255

#: The characters a target path may hold besides '/': RFC 3986 unreserved characters and the
#: sub-delimiters other than '*' (refused by Windows), and '@'. None of them needs quoting in a
#: URL path, so the path a client requests unquoted is the path the server looks up.
_PORTABLE = re.compile(r"[A-Za-z0-9\-._~!$&'()+,;=@]*")
#: Names Windows opens as devices whatever their extension (``aux.txt`` is AUX).
WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{port}{n}" for port in ("com", "lpt") for n in range(10)}
)
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


class InvalidTargetError(ValueError):
    """A target path, length or hash list that must not be signed."""


def bin_bits(bin_count: int) -> int:
    """TAP 15's ``bit_length`` for ``bin_count`` bins; ``ValueError`` unless a power of two in range.

    The one bin-count rule: the settings and the ceremony both ask it.
    """
    if bin_count < 2 or bin_count & (bin_count - 1) or bin_count > 2**MAX_BIN_BITS:
        raise ValueError(
            f"bin count {bin_count} must be a power of two from 2 to {2**MAX_BIN_BITS:,} "
            "(PEP 458 production: 16384)"
        )
    return bin_count.bit_length() - 1


def _refused_character(char: str) -> str:
    """Why ``char`` may not appear in a target path (a clause for the error message)."""
    code = f"U+{ord(char):04X}"
    if char == ":":
        return "contains ':' (a Windows drive letter or alternate data stream)"
    if char == "\\":
        return "contains a backslash (a Windows path separator)"
    if char in '*"<>|':
        return f"contains {char!r}, which Windows refuses in a filename"
    if unicodedata.category(char) == "Cc":
        return f"contains the control character {code}"
    if char in "\u2028\u2029":
        return f"contains the line or paragraph separator {code}"
    if char in _BIDI_CONTROLS:
        return f"contains the bidirectional control {code}"
    shown = repr(char) if char.isprintable() else code
    return f"contains {shown}, which a client would have to quote in a URL"


def _check_segment(segment: str, shown: str) -> None:
    if segment == "":
        raise InvalidTargetError(f"target path {shown!r} has an empty segment")
    if segment in (".", ".."):
        raise InvalidTargetError(f"target path {shown!r} has a {segment!r} segment")
    if segment.endswith((".", " ")):
        raise InvalidTargetError(f"target path {shown!r} has a segment ending in a dot or a space, "
                                 "which Windows drops")
    if segment.split(".", 1)[0].lower() in WINDOWS_DEVICE_NAMES:
        raise InvalidTargetError(f"target path {shown!r} has the segment {segment[:40]!r}, "
                                 "a device name on Windows")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidTargetError(f"target path {shown!r} has a segment over {MAX_SEGMENT_BYTES} bytes")


def validate_path(path: str | bytes) -> str:
    """Return ``path`` if it is a portable, URL-safe relative target path, else raise.

    The one rule for target paths, also the development host's filename check:
    relative and '/'-separated; every other character from :data:`_PORTABLE`
    (so no drive letter, ':', backslash, control, separator or bidi character,
    and nothing a client must quote); no empty, '.' or '..' segment, none that
    ends in a dot or a space, none that Windows opens as a device; segments of at
    most MAX_SEGMENT_BYTES and the path of at most MAX_TARGET_PATH_BYTES bytes.
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
    segments = path.split("/")
    for segment in segments:
        portable = _PORTABLE.match(segment).end()
        if portable < len(segment):
            raise InvalidTargetError(f"target path {shown!r} {_refused_character(segment[portable])}")
    for segment in segments:
        _check_segment(segment, shown)
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
    """Target paths of a project's simple pages: ``<name>/<name>.html`` and ``.json``.

    Empty for a project named like a Windows device (``con``, ``aux``, ``com1``...):
    Warehouse accepts such names, but no portable target path holds its pages, so
    they are not signed (its files are). Any other name the path rule refuses raises.
    """
    if project.lower() in WINDOWS_DEVICE_NAMES:
        return {}
    validate_path(f"{project}/{project}.html")
    return {"html": f"{project}/{project}.html", "json": f"{project}/{project}.json"}


def prefixed_name(path: str, digest: str) -> str:
    """Where a consistent-snapshot client fetches ``path``: ``<dir>/<digest>.<name>``."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/{digest}.{name}" if directory else f"{digest}.{name}"
