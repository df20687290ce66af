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
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

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


def _dotted_or_object(value: Any) -> Any:
    """A dotted name (``"warehouse.db.Session"``), resolved by ``includeme``, or the object itself
    (a Session class or a sessionmaker, given to the Configurator)."""
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?", value):
        raise ValueError("not a dotted name (e.g. 'warehouse.db.Session')")
    return value


@dataclasses.dataclass(frozen=True)
class _Setting:
    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def envvar(self) -> str:
        return "TUF_" + re.sub(r"[.\-]", "_", self.key.removeprefix("tuf.")).upper()


def _declare(key: str, default: Any, parse: Callable[[Any], Any], help: str) -> Any:
    """A :class:`TUFSettings` field read from setting ``key`` (environment variable derived from
    the key), parsed by ``parse``; the one place a setting is declared."""
    return dataclasses.field(metadata={"settings": {None: _Setting(key, default, parse, help)}})


def _declare_group(prefix: str, parse: Callable[[Any], Any], members: dict[str, tuple[Any, str]]) -> Any:
    """A :class:`TUFSettings` dict field: ``member -> parse(setting prefix.member)``."""
    return dataclasses.field(metadata={"settings": {
        member: _Setting(f"{prefix}.{member}", default, parse, help) for member, (default, help) in members.items()
    }})


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
    """The checked ``tuf.*`` settings, one field per setting (or per group of settings)."""

    env: str = _declare("tuf.env", "production", _environment,
                        "'production' refuses development keys; follows warehouse.env, else production")
    bin_count: int = _declare("tuf.bin_count", 256, _bin_count, "number of hash bins, a power of two")
    bin_name_prefix: str = _declare("tuf.bin_name_prefix", "bins", str, "bin role names are <prefix>-<hex>")
    hash_algorithms: tuple[str, ...] = _declare("tuf.hash_algorithms", "sha256", _hash_algorithms,
                                                "hash algorithms of every target, sha256 always among them")
    expiry: dict[str, timedelta] = _declare_group("tuf.expiry", parse_duration, {
        "root": ("365d", "root expiry"),
        "targets": ("365d", "targets expiry"),
        "bins": ("1d", "bin-n expiry"),
        "snapshot": ("1d", "snapshot expiry"),
        "timestamp": ("1d", "timestamp expiry"),
    })
    refresh_window: timedelta = _declare(
        "tuf.refresh_window", "6h", parse_duration,
        "refresh re-signs every online role expiring within this window "
        "(at least twice tuf.refresh_interval; each online expiry must exceed window + interval)")
    refresh_interval: timedelta = _declare("tuf.refresh_interval", "5m", parse_duration,
                                           "the periodic refresh runs this often")
    publish_interval: timedelta = _declare(
        "tuf.publish_interval", "1m", parse_duration,
        "the periodic publish (safety net for lost task messages) runs this often")
    bin_expiry_spread: float = _declare(
        "tuf.bin_expiry_spread", 0.5, _fraction,
        "at bootstrap, bin expiries are spread over this fraction of the bin expiry")
    retention: timedelta = _declare("tuf.retention", "7d", parse_duration,
                                    "gc deletes unreferenced metadata versions older than this")
    online_signers: tuple[str, ...] = _declare(
        "tuf.online_signers", "", _words,
        "private key URIs of the online key(s), 'KEYID=URI' or 'URI' when root trusts one")
    dev_keys_path: str = _declare("tuf.dev_keys_path", "", str, "directory holding development keys")
    storage_backend: str = _declare("tuf.storage.backend", "warehouse_tuf.storage.LocalStorage", str,
                                    "dotted name of the metadata storage class")
    storage_path: str = _declare("tuf.storage.path", "tuf-metadata", str, "metadata storage location")
    simple_backend: str = _declare("tuf.simple.backend", "warehouse_tuf.storage.LocalStorage", str,
                                   "dotted name of the storage for hash-prefixed simple pages")
    simple_path: str = _declare("tuf.simple.path", "tuf-simple", str, "simple page storage location")
    metadata_url: str = _declare("tuf.metadata_url", "", str, "public URL of the metadata, for status and verify")
    models: dict[str, str] = _declare_group("tuf.models", str, {
        "project": ("warehouse.packaging.models.Project", "Project model"),
        "release": ("warehouse.packaging.models.Release", "Release model"),
        "file": ("warehouse.packaging.models.File", "File model"),
        "journal": ("warehouse.packaging.models.JournalEntry",
                    "JournalEntry model: a new entry re-signs the pages of the project it names"),
    })
    simple_renderer: str = _declare("tuf.simple_renderer", "warehouse_tuf.pages.render_simple_view", str,
                                    "callable(request, project) -> SimplePages")
    publish_batch_limit: int = _declare("tuf.publish_batch_limit", 200_000, _positive_int,
                                        "the most pending changes one publish takes")
    lock_timeout: timedelta = _declare("tuf.lock_timeout", "10m", parse_duration,
                                       "how long a publisher waits for the publish lock")
    fan_out_batch: int = _declare(
        "tuf.fan_out_batch", 512, _positive_int,
        "bins per worker task when re-signing many bins (refresh, backfill, resign-bins; "
        "a key rotation signs in its own process)")
    enabled: bool = _declare("tuf.enabled", True, _asbool, "false turns the hooks off")
    metrics_interface: str = _declare(
        "tuf.metrics_interface", "warehouse.metrics.IMetricsService", str,
        "dotted name of the host's metrics service interface (none registered: no metrics)")
    targets_online: bool = _declare(
        "tuf.targets_online", False, _strict_bool,
        "true: root is the only offline role, the online key signs targets too "
        "(docs/ceremony.md); false: PEP 458's offline targets")
    session_class: Any = _declare(
        "tuf.session_class", "warehouse.db.Session", _dotted_or_object,
        "the host's SQLAlchemy Session class or sessionmaker (a dotted name, or the object given to the "
        "Configurator), whose flushes and commits the hooks follow")

    @property
    def bin_bits(self) -> int:
        """TAP 15's ``bit_length``: bin count = 2**bin_bits."""
        return targetlib.bin_bits(self.bin_count)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> TUFSettings:
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
        values: dict[str, Any] = {}
        for declared in dataclasses.fields(cls):
            group = declared.metadata["settings"]
            values[declared.name] = (parsed[group[None].key] if None in group
                                     else {member: parsed[setting.key] for member, setting in group.items()})
        return cls(**values)


#: Every setting, in declaration order, derived from the fields of :class:`TUFSettings`.
SETTINGS: tuple[_Setting, ...] = tuple(
    setting for declared in dataclasses.fields(TUFSettings) for setting in declared.metadata["settings"].values()
)
_BY_KEY = {s.key: s for s in SETTINGS}


def describe() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, help) of every setting, for docs and CLI."""
    return [(s.key, s.envvar, str(s.default), s.help) for s in SETTINGS]
