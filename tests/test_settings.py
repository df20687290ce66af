"""Settings: one declaration each (a TUFSettings field) from which reading, the environment
variable and the description derive; settings checked together (refresh cadence, window, expiries)."""

from __future__ import annotations

import datetime

import pytest
from pyramid.config import Configurator
from sqlalchemy.orm import Session

from warehouse_tuf import tasks
from warehouse_tuf.settings import SETTINGS, ConfigurationError, TUFSettings, describe


def test_every_field_is_read_from_its_declared_settings_and_their_environment_variables():
    """Each setting, given in the environment only, reaches its field: nothing is declared twice."""
    values = {"tuf.env": "development", "tuf.bin_count": "32", "tuf.bin_name_prefix": "b", "tuf.hash_algorithms":
              "sha256 sha512", "tuf.refresh_window": "7h", "tuf.refresh_interval": "6m", "tuf.publish_interval": "2m",
              "tuf.bin_expiry_spread": "0.25", "tuf.retention": "8d", "tuf.online_signers": "file2:/k",
              "tuf.publish_batch_limit": "7", "tuf.lock_timeout": "11m", "tuf.fan_out_batch": "9",
              "tuf.enabled": "false", "tuf.session_class": "host.db.Session", "tuf.targets_online": "true"}
    environ = {setting.envvar: values.get(setting.key, f"{setting.key}-x") for setting in SETTINGS}
    roles = ("root", "targets", "bins", "snapshot", "timestamp")
    environ.update({f"TUF_EXPIRY_{role.upper()}": "3d" for role in roles})
    parsed = TUFSettings.from_settings({}, environ=environ)
    assert (parsed.env, parsed.bin_count, parsed.bin_name_prefix, parsed.hash_algorithms) == (
        "development", 32, "b", ("sha256", "sha512"))
    assert parsed.expiry == dict.fromkeys(roles, datetime.timedelta(days=3))
    assert (parsed.refresh_window, parsed.refresh_interval, parsed.publish_interval, parsed.retention,
            parsed.lock_timeout) == (datetime.timedelta(hours=7), datetime.timedelta(minutes=6),
                                     datetime.timedelta(minutes=2), datetime.timedelta(days=8),
                                     datetime.timedelta(minutes=11))
    assert (parsed.bin_expiry_spread, parsed.online_signers, parsed.publish_batch_limit, parsed.fan_out_batch,
            parsed.enabled, parsed.session_class, parsed.targets_online) == (
        0.25, ("file2:/k",), 7, 9, False, "host.db.Session", True)
    assert (parsed.dev_keys_path, parsed.storage_backend, parsed.storage_path, parsed.simple_backend,
            parsed.simple_path, parsed.metadata_url, parsed.simple_renderer, parsed.metrics_interface) == (
        "tuf.dev_keys_path-x", "tuf.storage.backend-x", "tuf.storage.path-x", "tuf.simple.backend-x",
        "tuf.simple.path-x", "tuf.metadata_url-x", "tuf.simple_renderer-x", "tuf.metrics_interface-x")
    assert parsed.models == {name: f"tuf.models.{name}-x" for name in ("project", "release", "file", "journal")}
    assert [key for key, *_ in describe()] == [setting.key for setting in SETTINGS]
    assert len({setting.key for setting in SETTINGS}) == len(SETTINGS) == 33


@pytest.mark.parametrize("value", ["warehouse db", "warehouse..Session", "1warehouse.Session"])
def test_a_session_class_that_is_no_dotted_name_is_refused(value):
    with pytest.raises(ConfigurationError, match=r"tuf.session_class \(TUF_SESSION_CLASS\) = .*not a dotted name"):
        TUFSettings.from_settings({}, environ={"TUF_SESSION_CLASS": value})


def test_the_defaults_are_accepted():
    settings = TUFSettings.from_settings({}, environ={})
    assert settings.refresh_interval == datetime.timedelta(minutes=5)
    assert settings.refresh_window == datetime.timedelta(hours=6)
    assert settings.refresh_window >= 2 * settings.refresh_interval
    for role in ("timestamp", "snapshot", "bins"):
        assert settings.expiry[role] > settings.refresh_window + settings.refresh_interval


def test_the_limits_themselves_are_accepted():
    settings = TUFSettings.from_settings(
        {"tuf.refresh_interval": "10m", "tuf.refresh_window": "20m", "tuf.expiry.timestamp": "31m",
         "tuf.expiry.snapshot": "31m", "tuf.expiry.bins": "31m"}, environ={})
    assert settings.refresh_window == 2 * settings.refresh_interval


@pytest.mark.parametrize("settings, environ, message", [
    ({"tuf.refresh_window": "60s"}, {},
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 1m must be at least twice "
     "tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
    ({}, {"TUF_REFRESH_WINDOW": "9m"},
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 9m must be at least twice "
     "tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
    ({"tuf.refresh_interval": "4h"}, {},
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 6h must be at least twice "
     "tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 4h"),
    ({"tuf.expiry.timestamp": "6h"}, {},
     "tuf.expiry.timestamp (TUF_EXPIRY_TIMESTAMP) = 6h must be longer than "
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 6h plus tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
    ({"tuf.expiry.snapshot": "365m"}, {},
     "tuf.expiry.snapshot (TUF_EXPIRY_SNAPSHOT) = 365m must be longer than "
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 6h plus tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
    ({"tuf.expiry.bins": "1h"}, {},
     "tuf.expiry.bins (TUF_EXPIRY_BINS) = 1h must be longer than "
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 6h plus tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
    ({"tuf.refresh_window": "20m", "tuf.expiry.timestamp": "25m"}, {},
     "tuf.expiry.timestamp (TUF_EXPIRY_TIMESTAMP) = 25m must be longer than "
     "tuf.refresh_window (TUF_REFRESH_WINDOW) = 20m plus tuf.refresh_interval (TUF_REFRESH_INTERVAL) = 5m"),
])
def test_refresh_settings_that_let_a_role_expire_are_refused(settings, environ, message):
    with pytest.raises(ConfigurationError) as refused:
        TUFSettings.from_settings(settings, environ=environ)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("settings, environ, expected", [
    ({}, {}, False),  # PEP 458's model unless asked otherwise
    ({}, {"TUF_TARGETS_ONLINE": "true"}, True),
    ({"tuf.targets_online": "false"}, {"TUF_TARGETS_ONLINE": "true"}, False),  # the Configurator wins
    ({"tuf.targets_online": "yes"}, {}, True),
    ({"tuf.targets_online": True}, {}, True),
])
def test_the_trust_model_setting(settings, environ, expected):
    assert TUFSettings.from_settings(settings, environ=environ).targets_online is expected


def test_a_trust_model_setting_that_is_neither_true_nor_false_is_refused():
    with pytest.raises(ConfigurationError) as refused:
        TUFSettings.from_settings({}, environ={"TUF_TARGETS_ONLINE": "ture"})
    assert str(refused.value) == "tuf.targets_online (TUF_TARGETS_ONLINE) = 'ture': give true or false"


def test_the_periodic_refresh_runs_at_the_refresh_interval(tmp_path):
    """includeme schedules the refresh task every ``tuf.refresh_interval``, not on a fixed crontab."""
    from celery import Celery

    scheduled = {}

    def add_periodic_task(config, schedule, func, **kwargs):
        scheduled[func] = schedule

    config = Configurator(settings={
        "tuf.env": "development", "tuf.refresh_interval": "7m", "tuf.refresh_window": "1h",
        "tuf.simple_renderer": "", "tuf.session_class": type("HostSession", (Session,), {}),
        "tuf.storage.path": str(tmp_path / "metadata"), "tuf.simple.path": str(tmp_path / "simple"),
        "tuf.models.project": "dev.models.Project", "tuf.models.release": "dev.models.Release",
        "tuf.models.file": "dev.models.File", "tuf.models.journal": "dev.models.JournalEntry",
    })
    config.include("pyramid_services")
    config.registry["celery.app"] = Celery(set_as_current=False)
    config.add_directive("add_periodic_task", add_periodic_task, action_wrap=False)
    config.include("warehouse_tuf")
    config.commit()
    assert scheduled[tasks.refresh] == datetime.timedelta(minutes=7)
    assert scheduled[tasks.publish_pending] == datetime.timedelta(minutes=1)
