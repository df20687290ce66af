"""End to end on the embedded host (``python -m dev serve``: SQLite, tasks in process, 256 bins).

twine uploads a real sdist and wheel; python-tuf's ngclient and tuf-js verify
them and the project's pages; pip installs from /simple/; deletions over the
API take the targets away. The tests of this module run in order on one server;
test_e2e_distributed.py runs the same ones on the distributed host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from tuf.api import exceptions as tuf_exceptions
from webtest import TestApp

from dev.models import File, Project
from dev.tasks import wait_for_embedded_tasks
from dev.testing.devhost import (
    PASSWORD,
    ROOT,
    USERNAME,
    Host,
    HTTPClient,
    build_dists,
    dev_command,
    dist_path,
    http_delete,
    http_get,
    pending_count,
    pip_install,
    run_tufjs,
    start_server,
    stop,
    twine_upload,
    verify_like_a_client,
    wait_until,
)

pytestmark = pytest.mark.e2e

PROJECT = "tuf-e2e-demo"
HTML_PAGE, JSON_PAGE = f"{PROJECT}/{PROJECT}.html", f"{PROJECT}/{PROJECT}.json"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module", params=["false", "true"], ids=["pep458", "targets-online"])
def host(request, tmp_path_factory):
    """The embedded host, serving on a local port, under each trust model (``tuf.targets_online``)."""
    data = tmp_path_factory.mktemp("embedded") / "data"
    env = {"TUF_DEV_DATA": str(data), "TUF_DEV_MODE": "embedded", "TUF_BIN_COUNT": "256",
           "TUF_TARGETS_ONLINE": request.param}
    server, base = start_server(env, log=data.parent / "serve.log")
    engine = create_engine(f"sqlite:///{data / 'index.sqlite'}")
    yield Host(base, data, engine, env)
    stop(server)
    engine.dispose()


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    return build_dists(tmp_path_factory.mktemp("project"), PROJECT, "1.0")


def all_cached(engine) -> bool:
    """Whether sync_file_to_cache copied every upload from the archive to the served files."""
    with Session(engine) as session:
        return all(session.scalars(select(File.cached)).all())


@pytest.fixture(scope="module")
def uploaded(host, dists):
    result = twine_upload(host.base, *dists)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: pending_count(host.engine) == 0, 120, "the upload to be published")
    wait_until(lambda: all_cached(host.engine), 120, "the upload to be copied to the files storage")
    return dists


def test_wrong_credentials_are_refused_and_change_nothing(host, dists):
    base, engine = host.base, host.engine
    result = twine_upload(base, dists[0], password="wrong")
    assert result.returncode != 0 and "403" in result.stdout + result.stderr
    with Session(engine) as session:
        assert session.scalars(select(Project)).first() is None
    assert pending_count(engine) == 0
    assert http_delete(f"{base}/manage/project/{PROJECT}/", password="wrong") == 403


def test_ngclient_verifies_both_distributions_and_both_pages(host, uploaded):
    base = host.base
    client = HTTPClient(base)
    for dist in uploaded:
        assert client.download(dist_path(dist)) == dist.read_bytes()
    # The signed pages are byte for byte what /simple/<name>/ serves, in both forms.
    html_status, html_page, html_type = http_get(f"{base}/simple/{PROJECT}/")
    json_status, json_page, json_type = http_get(f"{base}/simple/{PROJECT}/", accept=JSON_ACCEPT)
    assert (html_status, html_type, json_status, json_type) == (200, "text/html; charset=UTF-8", 200, JSON_ACCEPT)
    assert client.download(HTML_PAGE, page=True) == html_page
    assert client.download(JSON_PAGE, page=True) == json_page
    assert sorted(f["filename"] for f in json.loads(json_page)["files"]) == sorted(d.name for d in uploaded)
    # A tampered distribution is refused.
    stored = host.data / "packages" / dist_path(uploaded[1])
    original = stored.read_bytes()
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with pytest.raises(tuf_exceptions.LengthOrHashMismatchError):
            client.download(dist_path(uploaded[1]))
    finally:
        stored.write_bytes(original)


def test_tufjs_verifies_a_distribution_and_both_pages(host, uploaded, tmp_path):
    base = host.base
    wheel = uploaded[1]
    result = run_tufjs(base, tmp_path / "tufjs", [(dist_path(wheel), False), (HTML_PAGE, True),
                                                  (JSON_PAGE, True), (f"{PROJECT}/missing.whl", False)])
    assert result.returncode == 0, result.stderr
    _, html_page, _ = http_get(f"{base}/simple/{PROJECT}/")
    _, json_page, _ = http_get(f"{base}/simple/{PROJECT}/", accept=JSON_ACCEPT)
    assert json.loads(result.stdout) == [
        {"path": dist_path(wheel), "found": True, "length": wheel.stat().st_size,
         "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()},
        {"path": HTML_PAGE, "found": True, "length": len(html_page),
         "sha256": hashlib.sha256(html_page).hexdigest()},
        {"path": JSON_PAGE, "found": True, "length": len(json_page),
         "sha256": hashlib.sha256(json_page).hexdigest()},
        {"path": f"{PROJECT}/missing.whl", "found": False},
    ]
    # A tampered distribution is refused by tuf-js too.
    stored = host.data / "packages" / dist_path(wheel)
    original = stored.read_bytes()
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        result = run_tufjs(base, tmp_path / "tufjs-tampered", [(dist_path(wheel), False)])
    finally:
        stored.write_bytes(original)
    assert result.returncode == 1 and f"Expected hash {hashlib.sha256(original).hexdigest()}" in result.stderr


def test_pip_installs_from_the_simple_index(host, uploaded, tmp_path):
    result = pip_install(host.base, PROJECT, tmp_path / "target")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "target" / "tuf_e2e_demo" / "__init__.py").read_text() == 'VERSION = "1.0"\n'


def test_tuf_status_and_publish_commands_work_against_the_host(host, uploaded):
    status = dev_command("tuf", "status", "--json", env=host.env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["bootstrapped"] and report["pending"] == 0 and report["problems"] == []
    assert report["targets"] == 4  # two distributions, two pages
    online = host.env.get("TUF_TARGETS_ONLINE") == "true"  # the distributed host runs PEP 458's
    assert report["trust_model"]["name"] == ("targets-online" if online else "pep458")
    # In the targets-online model the online key signs targets, as it signs the bins.
    targets = next(role for role in report["roles"] if role["role"] == "targets")
    assert (targets["keyids"] == report["bins"]["keyids"]) is online
    publish = dev_command("tuf", "publish", env=host.env)
    assert (publish.returncode, publish.stdout.strip()) == (0, "nothing to publish")


def test_targets_lists_and_verifies_the_uploaded_wheel_from_any_directory(host, uploaded, tmp_path):
    wheel = uploaded[1]
    # From another directory, with the metadata URL the running host recorded in its data directory.
    run = subprocess.run([sys.executable, "-m", "dev", "tuf", "targets", PROJECT, "--verify"], cwd=tmp_path,
                         env={**os.environ, **host.env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[:-1]}
    assert list(rows) == sorted(map(dist_path, uploaded)) + [HTML_PAGE, JSON_PAGE]
    path, length, sha256, bin_name, version = rows[dist_path(wheel)]
    assert int(length) == wheel.stat().st_size
    assert sha256 == "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert bin_name.startswith("bins-") and version.startswith("v") and int(version[1:]) >= 2
    assert lines[-1] == f"verified 4 target(s) as a client would, from {host.base}/tuf/metadata/"
    wrong = dev_command("tuf", "targets", "no-such-project", env=host.env)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        "error: no signed targets for project 'no-such-project' (not uploaded, not yet published, or a typo)")
    only = dev_command("tuf", "targets", PROJECT, "--version", "1.0", env=host.env)
    assert [line.split()[0] for line in only.stdout.splitlines()] == sorted(map(dist_path, uploaded))


def test_the_host_logs_one_line_per_request_and_per_publish_and_names_its_keys(host, uploaded):
    log = (host.data.parent / "serve.log").read_text()
    assert "Task queue depth" not in log and "Traceback" not in log, log[-3000:]
    assert f"TUF keys:  {ROOT / 'dev' / 'keys'}  (INSECURE development keys)" in log
    assert f"status:   {sys.prefix}/bin/python -m dev tuf status" in log
    uploads = [line for line in log.splitlines() if '"POST /legacy/ HTTP/1.1" 200' in line]
    assert len(uploads) == 2, log[-3000:]  # the sdist and the wheel, one access-log line each
    publishes = [line for line in log.splitlines() if line.startswith("tuf kind=publish ")]
    assert publishes and all(" changes=" in line and " seconds=" in line for line in publishes)


def test_deleting_the_release_then_the_project_removes_their_targets(host, uploaded):
    base, engine = host.base, host.engine
    client = HTTPClient(base)
    assert client.download(dist_path(uploaded[0])) == uploaded[0].read_bytes()

    assert http_delete(f"{base}/manage/project/{PROJECT}/release/1.0/") == 200
    wait_until(lambda: pending_count(engine) == 0, 120, "the release deletion to be published")
    for dist in uploaded:
        assert client.download(dist_path(dist)) is None
    page = json.loads(client.download(JSON_PAGE, page=True))
    assert page["files"] == []
    assert client.download(HTML_PAGE, page=True) == http_get(f"{base}/simple/{PROJECT}/")[1]

    assert http_delete(f"{base}/manage/project/{PROJECT}/") == 200
    wait_until(lambda: pending_count(engine) == 0, 120, "the project deletion to be published")
    assert client.download(HTML_PAGE, page=True) is None
    assert client.download(JSON_PAGE, page=True) is None
    assert http_get(f"{base}/simple/{PROJECT}/")[0] == 404


# -- in process: a failing upload transaction -----------------------------------------


def test_an_upload_whose_transaction_fails_after_the_file_row_leaves_no_target(host_config):
    config = host_config
    app = TestApp(config.make_wsgi_app())
    data = b"a wheel whose bytes cannot be stored"
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    # A plain file where the upload's directory must go in the archive storage:
    # storing fails after the File row (and the extension's pending change) was flushed.
    archive = Path(config.registry.settings["archive_files.path"])
    archive.mkdir(parents=True)
    (archive / blake2[:2]).write_bytes(b"")
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    form = {":action": "file_upload", "name": "demo", "version": "1.0", "filetype": "bdist_wheel",
            "pyversion": "py3"}
    with pytest.raises(OSError):
        app.post("/legacy/", form, upload_files=[("content", "demo-1.0-py3-none-any.whl", data)],
                 headers={"Authorization": f"Basic {token}"})
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending_count(config) == 0
    with Session(config.registry["sqlalchemy.engine"]) as session:
        assert session.scalars(select(Project)).first() is None
    path = f"{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/demo-1.0-py3-none-any.whl"
    assert verify_like_a_client(config, path) is None
    assert verify_like_a_client(config, "demo/demo.html", page=True) is None
