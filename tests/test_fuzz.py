"""Hostile input: the properties of dev/testing/fuzz.py (the fuzz soak runs them with many
more examples), the bounds they probe, and the counterexamples they found.
"""

from __future__ import annotations

import json

import pytest

from dev.testing.fuzz import ADMIN_ROUTES, PROPERTIES, READ_ROUTES, WRITE_ROUTES, access_host, one_line, valid_payload
from warehouse_tuf import ceremony, signing
from warehouse_tuf.models import MAX_TARGET_PATH_BYTES
from warehouse_tuf.settings import MAX_SETTING_LENGTH, ConfigurationError, TUFSettings
from warehouse_tuf.storage import LocalStorage, StorageError
from warehouse_tuf.targets import InvalidTargetError, page_paths, validate_path

# Each property is a test here, with the examples of dev.testing.fuzz.FUZZ (pytest collects
# what the module holds under a test_ name).
for _name, _property in PROPERTIES.items():
    globals()[f"test_{_name}"] = _property


def test_storage_refuses_a_name_through_a_symlink_pointing_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(StorageError, match="resolves outside"):
        LocalStorage(root).put("escape/evil.json", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_oversize_target_path_is_refused_at_the_documented_bound():
    longest = "/".join(["b" * 255] * 3 + ["b" * 254, "b"])  # segments of at most 255 bytes
    assert len(longest) == MAX_TARGET_PATH_BYTES
    assert validate_path(longest) == longest
    with pytest.raises(InvalidTargetError, match=f"the limit is {MAX_TARGET_PATH_BYTES}"):
        validate_path(longest + "b")
    with pytest.raises(InvalidTargetError, match="the limit is"):
        page_paths("p" * MAX_TARGET_PATH_BYTES)


def test_oversize_setting_is_refused_at_the_documented_bound():
    TUFSettings.from_settings({"tuf.metadata_url": "u" * MAX_SETTING_LENGTH}, environ={})
    with pytest.raises(ConfigurationError, match=f"longer than {MAX_SETTING_LENGTH}"):
        TUFSettings.from_settings({}, environ={"TUF_METADATA_URL": "u" * (MAX_SETTING_LENGTH + 1)})


def test_the_unmutated_payload_has_no_problems():
    assert ceremony.Payload.from_bytes(valid_payload()).problems() == []


def test_oversize_ceremony_payload_is_refused_at_the_documented_bound(tmp_path):
    padded = valid_payload().rstrip() + b" " * (ceremony.MAX_PAYLOAD_BYTES - len(valid_payload().rstrip()))
    assert ceremony.Payload.from_bytes(padded).problems() == []
    oversize = tmp_path / "payload.json"
    oversize.write_bytes(padded + b" ")
    with pytest.raises(ceremony.CeremonyError, match=f"over {ceremony.MAX_PAYLOAD_BYTES} bytes, the limit"):
        ceremony.Payload.from_file(oversize)


def test_every_route_is_classified_as_write_or_read_only():
    config, *_ = access_host()
    routes = {entry["introspectable"]["name"] for entry in config.registry.introspector.get_category("routes")}
    assert routes == WRITE_ROUTES | READ_ROUTES | ADMIN_ROUTES


# -- counterexamples the properties found, kept as regression tests ------------------------


def test_storage_refuses_a_name_no_file_system_can_hold(tmp_path):
    with pytest.raises(StorageError, match="not a plain relative path"):
        LocalStorage(tmp_path).put("a/\ud800.json", b"x")


def test_an_infinite_bin_count_is_a_setting_error():
    with pytest.raises(ConfigurationError, match="tuf.bin_count"):
        TUFSettings.from_settings({"tuf.bin_count": float("inf")}, environ={})


def _mutated_payload(mutate) -> bytes:
    obj = json.loads(valid_payload())
    mutate(obj)
    return json.dumps(obj).encode()


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update({"\nfield": 1}), r"unknown payload field\(s\): '\\nfield'"),
    (lambda p: p["root"]["signed"].update({"extra": 0.5}), "root: not valid TUF metadata"),
    (lambda p: p["root"]["signed"]["keys"].clear(), "root: its root role trusts key"),
])
def test_payload_counterexamples_are_one_line_ceremony_errors(mutate, message):
    with pytest.raises(ceremony.CeremonyError, match=message) as refused:
        ceremony.Payload.from_bytes(_mutated_payload(mutate))
    one_line(refused.value)


@pytest.mark.parametrize("where", ["targets", "root"])
def test_online_keys_refuses_a_key_id_that_is_not_a_string(where):
    payload = ceremony.Payload.from_bytes(valid_payload())
    role = (payload.targets.signed.delegations.succinct_roles if where == "targets"
            else payload.root.signed.roles["timestamp"])
    role.keyids[0] = None
    with pytest.raises(signing.SigningError, match="lists a key id that is not a string: \\[None\\]") as refused:
        signing.online_keys(payload.root.signed, payload.targets.signed)
    one_line(refused.value)


def test_online_keys_refuses_a_root_trusting_an_undefined_key():
    payload = ceremony.Payload.from_bytes(valid_payload())
    root = payload.root.signed
    root.keys.clear()
    with pytest.raises(signing.SigningError, match="does not define"):
        signing.online_keys(root, payload.targets.signed)
