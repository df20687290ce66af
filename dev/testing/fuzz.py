"""Hostile input, property-based (hypothesis): target paths, storage names, settings, ceremony
payloads, and requests to the development host without the right credentials.

Each property says: whatever the input, the parser either accepts something
safe or refuses with its own one-line error, and never writes outside the
storage root. ``tests/test_fuzz.py`` runs them with the examples of
:data:`FUZZ`; ``python -m dev soak fuzz --examples N`` with N examples each.
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from webtest import TestApp

from dev.models import File, JournalEntry, Project, Release
from dev.tasks import wait_for_embedded_tasks
from dev.testing.devhost import dev_config
from warehouse_tuf import ceremony, signing
from warehouse_tuf.models import MAX_TARGET_PATH_BYTES, PendingChange, utcnow
from warehouse_tuf.settings import MAX_SETTING_LENGTH, SETTINGS, ConfigurationError, TUFSettings
from warehouse_tuf.storage import LocalStorage, StorageError
from warehouse_tuf.targets import InvalidTargetError, prefixed_name, validate_path

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SEGMENTS = ["..", ".", "", "a", "pkg", "x-1.0.whl", "\\", "..\\..", "%2e%2e", "~", "\x00", "\n",
             "é", "\u202e", " ", "C:", "/", "a" * 120, "\ud800"]
hostile_paths = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_SEGMENTS), max_size=10).map("/".join),
    st.binary(max_size=80),
    st.integers(min_value=0, max_value=MAX_TARGET_PATH_BYTES).map(lambda n: "a/" + "b" * n),
)


def one_line(exc: Exception) -> None:
    message = str(exc)
    assert message and "\n" not in message, f"not a one-line error: {message!r}"


def assert_inside(jail: Path, root: Path) -> None:
    """Nothing but the storage root ever appears in the folder that holds it."""
    assert [p.name for p in jail.iterdir()] == [root.name]


@FUZZ
@given(hostile_paths)
def target_path_is_accepted_only_when_safe_and_never_escapes_storage(path):
    try:
        accepted = validate_path(path)
    except InvalidTargetError as exc:
        one_line(exc)
        return
    segments = accepted.split("/")
    assert not accepted.startswith("/") and "\\" not in accepted
    assert all(s not in ("", ".", "..") for s in segments)
    assert len(accepted.encode("utf-8")) <= MAX_TARGET_PATH_BYTES
    with tempfile.TemporaryDirectory() as jail:
        root = Path(jail) / "root"
        storage = LocalStorage(root)
        for name in (accepted, prefixed_name(accepted, "ab" * 32)):
            try:
                storage.put(name, b"x")
            except OSError as exc:  # e.g. a segment longer than the filesystem allows
                assert not isinstance(exc, StorageError), f"a valid target path was refused: {exc}"
                continue
            written = (root / name).resolve()
            assert written.is_relative_to(root.resolve()) and written.read_bytes() == b"x"
        assert_inside(Path(jail), root)


@FUZZ
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(_SEGMENTS), max_size=8).map("/".join)))
def storage_never_writes_outside_its_root(name):
    with tempfile.TemporaryDirectory() as jail:
        root = Path(jail) / "root"
        root.mkdir()
        (root / "escape").symlink_to(jail)  # a symlinked folder inside pointing outside
        storage = LocalStorage(root)
        try:
            storage.put(name, b"x")
        except OSError as exc:
            one_line(exc)
        else:
            assert (root / name).resolve().is_relative_to(root.resolve())
        assert sorted(p.name for p in Path(jail).iterdir()) == ["root"]


_SETTING_KEYS = [s.key for s in SETTINGS]
_ENVVARS = [s.envvar for s in SETTINGS]
setting_values = st.one_of(
    st.text(max_size=40), st.integers(), st.booleans(), st.none(), st.floats(),
    st.lists(st.text(max_size=8), max_size=3),
    st.sampled_from(["0", "-1", "1d", "0s", "99999999999999999999d", "3", "16384", "1e9", "nan",
                     "inf", "production", "sha512", " 6h ", "1.5", "x" * (MAX_SETTING_LENGTH + 1)]),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(_SETTING_KEYS), setting_values, max_size=6),
       st.dictionaries(st.sampled_from(_ENVVARS), st.text(max_size=30), max_size=4))
def settings_parse_or_fail_with_one_line_naming_the_setting(given_settings, environ):
    try:
        parsed = TUFSettings.from_settings(given_settings, environ=environ)
    except ConfigurationError as exc:
        one_line(exc)
        assert "tuf." in str(exc)
        return
    assert parsed.bin_count == 2 ** parsed.bin_bits
    assert "sha256" in parsed.hash_algorithms
    # No accepted configuration lets an online role expire before a refresh re-signs it.
    assert parsed.refresh_window >= 2 * parsed.refresh_interval
    for role in ("timestamp", "snapshot", "bins"):
        assert parsed.expiry[role] > parsed.refresh_window + parsed.refresh_interval


@functools.cache
def valid_payload() -> bytes:
    """A complete, signed bootstrap payload (one key for root and targets, another online: with the
    same key, the online key would hold targets, the targets-online model)."""
    with tempfile.TemporaryDirectory() as keys:
        key = signing.generate_key_file(Path(keys) / "key.pem")
        signer = signing.load_key_file(Path(keys) / "key.pem")
        online = signing.generate_key_file(Path(keys) / "online.pem")
    spec = ceremony.RoleSpec([key], 1)
    now = utcnow()
    root, targets = ceremony.build_roles(
        root=spec, targets=spec, online=ceremony.RoleSpec([online], 1), bin_bits=4, bin_prefix="bins",
        root_expires=now.replace(year=now.year + 1), targets_expires=now.replace(year=now.year + 1),
    )
    root.sign(signer)
    targets.sign(signer)
    return ceremony.Payload(root=root, targets=targets).to_bytes()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def check_payload(data: bytes) -> None:
    """A payload is either refused with a one-line CeremonyError or fully reportable."""
    try:
        payload = ceremony.Payload.from_bytes(data)
        problems = payload.problems()
        payload.report()
    except ceremony.CeremonyError as exc:
        one_line(exc)
        return
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def arbitrary_bytes_are_not_a_ceremony_payload(data):
    check_payload(data)


@FUZZ
@given(st.data())
def a_mutated_ceremony_payload_is_refused_or_reported(data):
    obj = json.loads(valid_payload())
    node = obj
    while True:  # walk down to a random field, then replace, delete or add there
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = data.draw(json_values)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(st.text(max_size=8))] = data.draw(json_values)
        else:
            node.append(data.draw(json_values))
        break
    check_payload(json.dumps(obj).encode())


# -- access: the development host's endpoints under hostile requests ------------------------

SECRET = b"outside every storage root"
GOOD_AUTH = "Basic " + base64.b64encode(b"tuf-dev:tuf-dev").decode()
WRITE_ROUTES = {"legacy.upload", "manage.project", "manage.release", "manage.file", "manage.release.yank",
                "manage.release.unyank"}
READ_ROUTES = {"simple.index", "simple.detail", "simple.stored", "packages", "tuf.metadata"}
#: Read-only, for the admins alone (dev.admins): 401 without the account's credentials.
ADMIN_ROUTES = {"admin.tuf"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@functools.cache
def access_host() -> tuple:
    """An embedded host with one uploaded file, and a secret file beside its storage roots."""
    data = Path(tempfile.mkdtemp(prefix="tuf-access-"))
    atexit.register(shutil.rmtree, data, True)
    config = dev_config(data, f"sqlite:///{data / 'index.sqlite'}")
    app = TestApp(config.make_wsgi_app())
    filename = "demo-1.0-py3-none-any.whl"
    app.post("/legacy/", {":action": "file_upload", "name": "demo", "version": "1.0",
                          "filetype": "bdist_wheel", "pyversion": "py3"},
             upload_files=[("content", filename, b"demo wheel")], headers={"Authorization": GOOD_AUTH})
    wait_for_embedded_tasks(config.registry["celery.app"])
    (data / "secret.txt").write_bytes(SECRET)
    with Session(config.registry["sqlalchemy.engine"]) as session:
        path = session.scalar(select(File.path))
    page = json.loads(app.get("/tuf/metadata/timestamp.json").body)  # the host serves metadata
    assert page["signed"]["version"] >= 2
    urls = {
        "legacy.upload": "/legacy/", "manage.project": "/manage/project/demo/",
        "manage.release": "/manage/project/demo/release/1.0/",
        "manage.file": f"/manage/project/demo/release/1.0/file/{filename}",
        "manage.release.yank": "/manage/project/demo/release/1.0/yank/",
        "manage.release.unyank": "/manage/project/demo/release/1.0/unyank/",
        "simple.index": "/simple/", "simple.detail": "/simple/demo/",
        "simple.stored": f"/simple/demo/{next((data / 'tuf-simple' / 'demo').glob('*.demo.html')).name}",
        "packages": f"/packages/{path}",
        "tuf.metadata": "/tuf/metadata/1.root.json",
        "admin.tuf": "/admin/tuf/",
    }
    return config, app, data, urls


def host_state(config, data: Path) -> tuple:
    """Everything a write would change: the host's rows, pending changes, stored bytes."""
    engine = config.registry["sqlalchemy.engine"]
    with Session(engine) as session:
        rows = tuple(session.scalar(select(func.count()).select_from(model))
                     for model in (Project, Release, File, JournalEntry, PendingChange))
    stored = tuple(sorted((str(p.relative_to(data)), p.stat().st_size) for p in data.rglob("*")
                          if p.is_file() and p.suffix not in (".sqlite", ".sqlite-wal", ".sqlite-shm")))
    return rows, stored


credentials = st.one_of(
    st.none(),
    st.tuples(st.text(max_size=12), st.text(max_size=12)).filter(lambda c: c != ("tuf-dev", "tuf-dev"))
    .map(lambda c: "Basic " + base64.b64encode(f"{c[0]}:{c[1]}".encode()).decode()),
    st.sampled_from(["Basic", "Basic !!!", "Basic dHVmLWRldg==", "Bearer tuf-dev", "basic  ",
                     "Basic " + base64.b64encode(b"tuf-dev:tuf-dev ").decode(),
                     "Basic " + base64.b64encode(b"TUF-DEV:tuf-dev").decode()]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


@FUZZ
@given(st.sampled_from(sorted(WRITE_ROUTES | READ_ROUTES | ADMIN_ROUTES)), st.sampled_from(METHODS), credentials)
def no_request_without_the_right_credentials_changes_anything(route, method, authorization):
    config, app, data, urls = access_host()
    before = host_state(config, data)
    headers = {"Authorization": authorization} if authorization is not None else {}
    params = {":action": "file_upload", "name": "demo", "version": "2.0", "filetype": "bdist_wheel"}
    if method == "POST":
        response = app.post(urls[route], params, upload_files=[("content", "demo-2.0-py3-none-any.whl", b"x")],
                            headers=headers, expect_errors=True)
    else:
        response = app.request(urls[route], method=method, headers=headers, expect_errors=True)
    if route in WRITE_ROUTES:
        assert response.status_int == 403, (route, method, response.status)
    elif route in ADMIN_ROUTES and method in ("GET", "HEAD"):
        assert response.status_int == 401, (route, method, response.status)
    elif method in ("GET", "HEAD"):
        assert response.status_int == 200, (route, method, response.status)
    else:
        assert 400 <= response.status_int < 500, (route, method, response.status)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert host_state(config, data) == before


@FUZZ
@given(st.sampled_from(["/packages/", "/tuf/metadata/", "/simple/demo/"]),
       st.one_of(st.lists(st.sampled_from(["..", ".", "secret.txt", "%2e%2e", "..%2f", "tuf-metadata",
                                           "packages", "index.sqlite", ""]), max_size=6).map("/".join),
                 st.text(max_size=40)))
def read_only_endpoints_never_serve_a_file_outside_their_storage(prefix, path):
    config, app, data, _ = access_host()
    response = app.get(prefix + urllib.parse.quote(path, safe="/%"), expect_errors=True)
    assert response.status_int in (200, 301, 404), response.status
    assert SECRET not in response.body and b"SQLite format" not in response.body


#: The properties, by name: what the fuzz soak runs (``dev/soak/fuzz.py``).
PROPERTIES = {prop.__name__: prop for prop in (
    target_path_is_accepted_only_when_safe_and_never_escapes_storage,
    storage_never_writes_outside_its_root,
    settings_parse_or_fail_with_one_line_naming_the_setting,
    arbitrary_bytes_are_not_a_ceremony_payload,
    a_mutated_ceremony_payload_is_refused_or_reported,
    no_request_without_the_right_credentials_changes_anything,
    read_only_endpoints_never_serve_a_file_outside_their_storage,
)}
