"""The extension's settings: ``tuf.*`` keys, each also settable from the environment.

Settings given to the Configurator win over the environment (Warehouse's
``maybe_set`` rule), and the environment wins over the defaults. Every value
is checked once, here, so that a wrong setting is a clear error at startup and
never a half-written publish later.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Callable

from warehouse_tuf import targets as targetlib


class ConfigurationError(ValueError):
    """A ``tuf.*`` setting is missing or wrong."""


#: Upper bound of any single setting value, so a hostile environment cannot
#: make the parser chew on megabytes.
MAX_SETTING_LENGTH = 8192

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _asbool(value: Any) -> bool:
    """Pyramid's ``asbool``, imported when a setting is read: the offline ceremony (which parses
    durations here) runs where Pyramid is not installed."""
    from pyramid.settings import asbool

    return asbool(value)


def _strict_bool(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0: for a setting where a typo read as false weakens security."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("give true or false")


def parse_duration(value: str | int | timedelta) -> timedelta:
    """Parse ``"1d"``, ``"6h"``, ``"30m"``, ``"90s"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f"not a duration: {value!r} (use e.g. '365d', '1d', '6h', '90s')"
            )
        seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    if seconds > 20 * 365 * 86400:
        raise ValueError(f"duration longer than 20 years: {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """``value`` in the largest unit that divides it exactly: ``"1d"``, ``"90m"``, ``"45s"``."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = {"d": 86400, "h": 3600, "m": 60}[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bin_count(value: str | int) -> int:
    count = int(value)
    targetlib.bin_bits(count)  # the one rule, shared with the ceremony
    return count


def _environment(value: Any) -> str:
    # Warehouse's ``warehouse.env`` is an ``Environment`` enum member, whose str() is
    # "Environment.production": take its value.
    env = str(getattr(value, "value", value)).strip().lower()
    if env not in ("development", "production"):
        raise ValueError(f"{value!r} is neither 'development' nor 'production'")
    return env


def _hash_algorithms(value: str | list[str]) -> tuple[str, ...]:
    names = value.split() if isinstance(value, str) else list(value)
    allowed = {"sha256", "sha512", "blake2b-256"}
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unsupported hash algorithm(s) {unknown}; allowed: {sorted(allowed)}")
    if "sha256" not in names:
        raise ValueError("sha256 must be among the target hash algorithms (pip and tuf-js verify it)")
    return tuple(sorted(set(names)))


def _words(value: str | list[str]) -> tuple[str, ...]:
    return tuple(value.split()) if isinstance(value, str) else tuple(value)


def _positive_int(value: str | int) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be a positive integer, not {value!r}")
    return number


def _fraction(value: str | float) -> float:
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"must be a fraction from 0 up to (not including) 1, not {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class _Setting:
    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def envvar(self) -> str:
        return "TUF_" + re.sub(r"[.\-]", "_", self.key.removeprefix("tuf.")).upper()


SETTINGS: tuple[_Setting, ...] = (
    _Setting("tuf.env", "production", _environment,
             "'production' refuses development keys; follows warehouse.env, else production"),
    _Setting("tuf.bin_count", 256, _bin_count, "number of hash bins, a power of two"),
    _Setting("tuf.bin_name_prefix", "bins", str, "bin role names are <prefix>-<hex>"),
    _Setting("tuf.hash_algorithms", "sha256", _hash_algorithms,
             "hash algorithms of every target, sha256 always among them"),
    _Setting("tuf.expiry.root", "365d", parse_duration, "root expiry"),
    _Setting("tuf.expiry.targets", "365d", parse_duration, "targets expiry"),
    _Setting("tuf.expiry.bins", "1d", parse_duration, "bin-n expiry"),
    _Setting("tuf.expiry.snapshot", "1d", parse_duration, "snapshot expiry"),
    _Setting("tuf.expiry.timestamp", "1d", parse_duration, "timestamp expiry"),
    _Setting("tuf.refresh_window", "6h", parse_duration,
             "refresh re-signs every online role expiring within this window "
             "(at least twice tuf.refresh_interval; each online expiry must exceed window + interval)"),
    _Setting("tuf.refresh_interval", "5m", parse_duration,
             "the periodic refresh runs this often"),
    _Setting("tuf.publish_interval", "1m", parse_duration,
             "the periodic publish (safety net for lost task messages) runs this often"),
    _Setting("tuf.bin_expiry_spread", 0.5, _fraction,
             "at bootstrap, bin expiries are spread over this fraction of the bin expiry"),
    _Setting("tuf.retention", "7d", parse_duration,
             "gc deletes unreferenced metadata versions older than this"),
    _Setting("tuf.online_signers", "", _words,
             "private key URIs of the online key(s), 'KEYID=URI' or 'URI' when root trusts one"),
    _Setting("tuf.dev_keys_path", "", str, "directory holding development keys"),
    _Setting("tuf.storage.backend", "warehouse_tuf.storage.LocalStorage", str,
             "dotted name of the metadata storage class"),
    _Setting("tuf.storage.path", "tuf-metadata", str, "metadata storage location"),
    _Setting("tuf.simple.backend", "warehouse_tuf.storage.LocalStorage", str,
             "dotted name of the storage for hash-prefixed simple pages"),
    _Setting("tuf.simple.path", "tuf-simple", str, "simple page storage location"),
    _Setting("tuf.metadata_url", "", str, "public URL of the metadata, for status and verify"),
    _Setting("tuf.models.project", "warehouse.packaging.models.Project", str, "Project model"),
    _Setting("tuf.models.release", "warehouse.packaging.models.Release", str, "Release model"),
    _Setting("tuf.models.file", "warehouse.packaging.models.File", str, "File model"),
    _Setting("tuf.models.journal", "warehouse.packaging.models.JournalEntry", str,
             "JournalEntry model: a new entry re-signs the pages of the project it names"),
    _Setting("tuf.simple_renderer", "warehouse_tuf.pages.render_simple_view", str,
             "callable(request, project) -> SimplePages"),
    _Setting("tuf.publish_batch_limit", 200_000, _positive_int,
             "the most pending changes one publish takes"),
    _Setting("tuf.lock_timeout", "10m", parse_duration,
             "how long a publisher waits for the publish lock"),
    _Setting("tuf.fan_out_batch", 512, _positive_int,
             "bins per worker task when re-signing many bins (refresh, backfill, key rotation)"),
    _Setting("tuf.enabled", True, _asbool, "false turns the hooks off"),
    _Setting("tuf.targets_online", False, _strict_bool,
             "true: root is the only offline role, the online key signs targets too "
             "(docs/ceremony.md); false: PEP 458's offline targets"),
    _Setting("tuf.metrics_interface", "warehouse.metrics.IMetricsService", str,
             "dotted name of the host's metrics service interface (none registered: no metrics)"),
)

_BY_KEY = {s.key: s for s in SETTINGS}


def collect(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """Fill in ``tuf.*`` settings from the environment and defaults, raw (unparsed)."""
    environ = os.environ if environ is None else environ
    merged = dict(settings)
    if "tuf.env" not in merged and "TUF_ENV" not in environ and "warehouse.env" in merged:
        merged["tuf.env"] = merged["warehouse.env"]
    for setting in SETTINGS:
        if setting.key not in merged and setting.envvar in environ:
            merged[setting.key] = environ[setting.envvar]
        merged.setdefault(setting.key, setting.default)
    return merged


#: The roles the periodic refresh keeps signed (root and targets are signed offline).
ONLINE_ROLES = ("timestamp", "snapshot", "bins")


def _shown(key: str, value: timedelta) -> str:
    return f"{key} ({_BY_KEY[key].envvar}) = {format_duration(value)}"


def _check_refresh(parsed: Mapping[str, Any]) -> None:
    """Refuse refresh settings under which an online role can expire before a refresh re-signs it.

    A run re-signs every online role expiring within the window; the next run
    comes one interval later. With window >= 2 x interval, a role is re-signed
    with at least one interval left, even when one run is slow or missed. Each
    online expiry must exceed window + interval, so that a role just re-signed
    is not due again at the next run.
    """
    window, interval = parsed["tuf.refresh_window"], parsed["tuf.refresh_interval"]
    if window < 2 * interval:
        raise ConfigurationError(
            f"{_shown('tuf.refresh_window', window)} must be at least twice "
            f"{_shown('tuf.refresh_interval', interval)}: with one slow or missed refresh run "
            "an online role would expire before it is re-signed"
        )
    for role in ONLINE_ROLES:
        key = f"tuf.expiry.{role}"
        if parsed[key] <= window + interval:
            raise ConfigurationError(
                f"{_shown(key, parsed[key])} must be longer than "
                f"{_shown('tuf.refresh_window', window)} plus {_shown('tuf.refresh_interval', interval)}: "
                f"{role} re-signed by one refresh run would be due again at the next"
            )


@dataclasses.dataclass(frozen=True)
class TUFSettings:
    """The checked ``tuf.*`` settings."""

    env: str
    bin_count: int
    bin_name_prefix: str
    hash_algorithms: tuple[str, ...]
    expiry: dict[str, timedelta]
    refresh_window: timedelta
    refresh_interval: timedelta
    publish_interval: timedelta
    bin_expiry_spread: float
    retention: timedelta
    online_signers: tuple[str, ...]
    dev_keys_path: str
    storage_backend: str
    storage_path: str
    simple_backend: str
    simple_path: str
    metadata_url: str
    models: dict[str, str]
    simple_renderer: str
    publish_batch_limit: int
    lock_timeout: timedelta
    fan_out_batch: int
    enabled: bool
    metrics_interface: str
    targets_online: bool

    @property
    def bin_bits(self) -> int:
        """TAP 15's ``bit_length``: bin count = 2**bin_bits."""
        return targetlib.bin_bits(self.bin_count)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> "TUFSettings":
        """Parse and check; raise :class:`ConfigurationError` naming the bad setting."""
        raw = collect(settings, environ)
        parsed: dict[str, Any] = {}
        for setting in SETTINGS:
            value = raw[setting.key]
            if isinstance(value, str) and len(value) > MAX_SETTING_LENGTH:
                raise ConfigurationError(
                    f"{setting.key} ({setting.envvar}) is longer than {MAX_SETTING_LENGTH} characters"
                )
            try:
                parsed[setting.key] = setting.parse(value)
            except (TypeError, ValueError, OverflowError) as exc:  # int(float("inf")) overflows
                raise ConfigurationError(
                    f"{setting.key} ({setting.envvar}) = {value!r}: {exc}"
                ) from None
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", parsed["tuf.bin_name_prefix"]):
            raise ConfigurationError(
                f"tuf.bin_name_prefix = {parsed['tuf.bin_name_prefix']!r}: "
                "use lowercase letters, digits and '_' (at most 32)"
            )
        _check_refresh(parsed)
        return cls(
            env=parsed["tuf.env"],
            bin_count=parsed["tuf.bin_count"],
            bin_name_prefix=parsed["tuf.bin_name_prefix"],
            hash_algorithms=parsed["tuf.hash_algorithms"],
            expiry={role: parsed[f"tuf.expiry.{role}"]
                    for role in ("root", "targets", "bins", "snapshot", "timestamp")},
            refresh_window=parsed["tuf.refresh_window"],
            refresh_interval=parsed["tuf.refresh_interval"],
            publish_interval=parsed["tuf.publish_interval"],
            bin_expiry_spread=parsed["tuf.bin_expiry_spread"],
            retention=parsed["tuf.retention"],
            online_signers=parsed["tuf.online_signers"],
            dev_keys_path=parsed["tuf.dev_keys_path"],
            storage_backend=parsed["tuf.storage.backend"],
            storage_path=parsed["tuf.storage.path"],
            simple_backend=parsed["tuf.simple.backend"],
            simple_path=parsed["tuf.simple.path"],
            metadata_url=parsed["tuf.metadata_url"],
            models={name: parsed[f"tuf.models.{name}"]
                    for name in ("project", "release", "file", "journal")},
            simple_renderer=parsed["tuf.simple_renderer"],
            publish_batch_limit=parsed["tuf.publish_batch_limit"],
            lock_timeout=parsed["tuf.lock_timeout"],
            fan_out_batch=parsed["tuf.fan_out_batch"],
            enabled=parsed["tuf.enabled"],
            metrics_interface=parsed["tuf.metrics_interface"],
            targets_online=parsed["tuf.targets_online"],
        )


def describe() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, help) of every setting, for docs and CLI."""
    return [(s.key, s.envvar, str(s.default), s.help) for s in SETTINGS]
