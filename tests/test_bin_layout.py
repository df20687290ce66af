"""The bin layout comes from the installed targets; settings that disagree are refused."""

from __future__ import annotations

import datetime
import json

import pytest

from tests.conftest import make_configurator, make_settings
from tests.keyholders import run
from tests.test_services import db_state, publish_file, storage_state
from tests.tufclient import Client
from warehouse_tuf import targets as targetlib
from warehouse_tuf.services import BinLayoutError, TUFManager
from warehouse_tuf.storage import LocalStorage

#: ``repo`` is bootstrapped with 16 bins named bins-0 .. bins-f (tests/conftest.py).
COUNT_32 = "tuf.bin_count (TUF_BIN_COUNT) is 32 but the installed targets delegates to 16 bins: set it to 16"
PREFIX_OTHER = ("tuf.bin_name_prefix (TUF_BIN_NAME_PREFIX) is 'other' but the installed targets names "
                "its bins bins-*: set it to 'bins'")


def other_manager(repo, tmp_path, **settings) -> TUFManager:
    """A second process of the same repository (same database and storage) with other settings."""
    return TUFManager(repo.db, make_settings(tmp_path, **settings),
                      LocalStorage(repo.storage.base), LocalStorage(repo.simple_storage.base))


@pytest.mark.parametrize("overrides, message", [
    ({"tuf.bin_count": 32}, COUNT_32),
    ({"tuf.bin_count": 8}, "tuf.bin_count (TUF_BIN_COUNT) is 8 but the installed targets delegates to 16 bins"),
    ({"tuf.bin_name_prefix": "other"}, PREFIX_OTHER),
])
def test_settings_that_disagree_with_the_installed_bins_are_refused_and_change_nothing(
        repo, db, metadata_dir, tmp_path, overrides, message):
    targets_dir = tmp_path / "packages"
    path = publish_file(repo, targets_dir, "demo-1.0-py3-none-any.whl", b"a wheel")
    db.commit()
    other = other_manager(repo, tmp_path, **overrides)
    before_db, before_storage = db_state(db), storage_state(metadata_dir)
    now = datetime.datetime.now(datetime.timezone.utc)
    operations = {
        "publish": other.publish,
        "publish, not waiting": lambda: other.publish(wait=False),
        "refresh": other.refresh,
        "resign every bin": other.resign_bins,
        # The worker side of the fan-out: a worker whose settings disagree signs nothing.
        "worker": lambda: other.sign_reserved_bins(list(range(16)), now, now),
    }
    for label, operation in operations.items():
        with pytest.raises(BinLayoutError) as refused:
            operation()
        assert str(refused.value).startswith(message), label
        assert "\n" not in str(refused.value)
        assert db_state(db) == before_db, label
        assert storage_state(metadata_dir) == before_storage, label
    problems = other.status()["problems"]
    assert [p for p in problems if p.startswith(message)], problems
    # The process whose settings match publishes the change, into the bin its hash names.
    assert not [p for p in repo.status()["problems"] if "bin" in p]
    result = repo.publish()
    assert result.changes == 1 and result.bins == [targetlib.bin_name(targetlib.bin_index(path, 4), 4, "bins")]
    assert Client(metadata_dir, targets_dir).download(path) == b"a wheel"


def test_bin_indexes_follow_the_installed_targets_not_the_settings(repo, tmp_path):
    """Even a manager that skipped the check would compute 16-bin indexes: the layout is read, not configured."""
    other = other_manager(repo, tmp_path, **{"tuf.bin_count": 32})
    with pytest.raises(BinLayoutError):
        other.bin_layout()
    assert repo.bin_layout() == targetlib.BinLayout(4, "bins")
    assert [repo.bin_layout().name(i) for i in (0, 15)] == ["bins-0", "bins-f"]


def test_cli_publish_refuses_in_one_line_and_status_names_the_problem(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")
    config = make_configurator(engine, tmp_path, **{"tuf.bin_count": 32})
    refused = run(config, "publish", ok=False)
    assert refused.output.strip().splitlines() == [f"error: {COUNT_32} (bins are fixed at bootstrap)"]
    report = json.loads(run(config, "status", "--json", ok=False).output)
    assert [p for p in report["problems"] if p.startswith(COUNT_32)]
    assert f"problem: {COUNT_32}" in run(config, "status", ok=False).output


def test_a_bin_without_a_role_is_refused_before_anything_is_signed(repo, db, metadata_dir):
    """A bin index outside the installed layout would be signed into no role: nothing is published."""
    before_db, before_storage = db_state(db), storage_state(metadata_dir)
    with pytest.raises(BinLayoutError, match="1 of 2 bins to sign have no role in the database"):
        repo.resign_bins([3, 16])
    assert db_state(db) == before_db
    assert storage_state(metadata_dir) == before_storage
