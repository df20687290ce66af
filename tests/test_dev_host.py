"""The development host's endpoints and commands, in process (webtest), on both databases."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from webtest import TestApp

from dev.commands import beat, serve, worker
from dev.models import File
from dev.tasks import wait_for_embedded_tasks
from tests.devhost import PASSWORD, USERNAME, add_file, pending_count, verify_like_a_client
from warehouse_tuf import record_index_changes
from warehouse_tuf.cli import tuf

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
WHEEL = b"the bytes of a wheel"
FORM = {":action": "file_upload", "name": "Demo.Pkg", "version": "1.0", "filetype": "bdist_wheel",
        "pyversion": "py3"}


@pytest.fixture
def config(host_config):
    return host_config


@pytest.fixture
def app(config):
    return TestApp(config.make_wsgi_app())


def upload(app, status=200, filename="demo_pkg-1.0-py3-none-any.whl", data=WHEEL, **fields):
    return app.post("/legacy/", {**FORM, **fields}, upload_files=[("content", filename, data)],
                    headers=AUTH, status=status)


def file_count(config) -> int:
    with Session(config.registry["sqlalchemy.engine"]) as session:
        return session.scalar(select(func.count()).select_from(File))


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "../etc"}, "Invalid project name"),
    ({"version": "1.0 beta"}, "Invalid version"),
    ({"filetype": "bdist_egg"}, "Unsupported filetype"),
    ({":action": "submit"}, "Unsupported ':action'"),
    ({"sha256_digest": "0" * 64}, "sha256_digest given does not match"),
    ({"filename": "other-1.0-py3-none-any.whl"}, "Invalid filename"),
    ({"filename": "demo_pkg-1.0.exe"}, "Invalid filename"),
])
def test_bad_uploads_get_a_one_line_error_and_change_nothing(app, config, fields, message):
    fields = dict(fields)  # shared by both database runs
    filename = fields.pop("filename", "demo_pkg-1.0-py3-none-any.whl")
    response = upload(app, status=400, filename=filename, **fields)
    assert message in response.status and "\n" not in response.status
    assert response.text.count("\n") == 1
    assert (file_count(config), pending_count(config)) == (0, 0)


def test_uploading_the_same_file_twice_is_accepted_once(app, config):
    upload(app)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert "identical" in upload(app).text  # twine --skip-existing
    response = upload(app, status=400, data=b"other bytes, same name")
    assert "File already exists" in response.status
    response = upload(app, status=400, filename="demo_pkg-1.0-py2-none-any.whl")  # same bytes
    assert "File already exists" in response.status
    assert (file_count(config), pending_count(config)) == (1, 0)
    digest = hashlib.blake2b(WHEEL, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/demo_pkg-1.0-py3-none-any.whl"
    assert verify_like_a_client(config, path) == WHEEL


def test_write_endpoints_need_the_account(app, config):
    assert app.post("/legacy/", FORM, status=403)
    bad = {"Authorization": "Basic " + base64.b64encode(b"tuf-dev:nope").decode()}
    app.post("/legacy/", FORM, headers=bad, status=403)
    app.delete("/manage/project/demo-pkg/", status=403)
    app.get("/legacy/", headers=AUTH, status=405)
    app.delete("/manage/project/demo-pkg/", headers=AUTH, status=404)
    assert file_count(config) == 0


def test_deleting_one_file_keeps_the_rest_of_the_release(app, config):
    upload(app)
    upload(app, filename="demo.pkg-1.0.tar.gz", data=b"an sdist", filetype="sdist")
    wait_for_embedded_tasks(config.registry["celery.app"])
    app.delete("/manage/project/Demo.Pkg/release/1.0/file/demo.pkg-1.0.tar.gz", headers=AUTH)
    app.delete("/manage/project/demo-pkg/release/2.0/", headers=AUTH, status=404)
    wait_for_embedded_tasks(config.registry["celery.app"])
    page = json.loads(app.get("/simple/demo-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).body)
    assert [f["filename"] for f in page["files"]] == ["demo_pkg-1.0-py3-none-any.whl"]
    signed = verify_like_a_client(config, "demo-pkg/demo-pkg.json", page=True)
    assert signed == app.get("/simple/demo-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).body


def test_simple_pages_negotiate_and_redirect_to_the_normalized_name(app, config):
    upload(app)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert app.get("/simple/Demo.Pkg/", status=301).location.endswith("/simple/demo-pkg/")
    html = app.get("/simple/demo-pkg/")
    assert html.content_type == "text/html" and html.headers["Vary"] == "Accept"
    assert 'href="../../packages/' in html.text
    assert verify_like_a_client(config, "demo-pkg/demo-pkg.html", page=True) == html.body
    pip_accept = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
                  "text/html; q=0.01")
    assert app.get("/simple/demo-pkg/", headers={"Accept": pip_accept}).content_type == \
        "application/vnd.pypi.simple.v1+json"
    app.get("/simple/demo-pkg/", headers={"Accept": "image/png"}, status=404)
    index = app.get("/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json
    assert index["projects"] == [{"name": "Demo.Pkg"}]
    app.get("/simple/missing/", status=404)


def test_read_only_endpoints_serve_storage_and_refuse_other_names(app, config):
    upload(app)
    wait_for_embedded_tasks(config.registry["celery.app"])
    digest = hashlib.blake2b(WHEEL, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/demo_pkg-1.0-py3-none-any.whl"
    assert app.get(f"/packages/{path}").body == WHEEL == verify_like_a_client(config, path)
    assert app.get("/tuf/metadata/timestamp.json").json["signed"]["_type"] == "timestamp"
    html = app.get("/simple/demo-pkg/").body
    stored = f"/simple/demo-pkg/{hashlib.sha256(html).hexdigest()}.demo-pkg.html"
    assert app.get(stored).body == html
    for url in ("/packages/../index.sqlite", "/packages/%2e%2e/index.sqlite", "/tuf/metadata/missing.json",
                "/simple/demo-pkg/0.demo-pkg.html"):
        app.get(url, status=404)
    app.post("/tuf/metadata/timestamp.json", status=404)


def test_tuf_cli_publishes_and_renders_pages_on_the_host(config):
    with Session(config.registry["sqlalchemy.engine"]) as session:
        add_file(session, "Demo", "1.0", "demo-1.0.tar.gz", b"an sdist")
        record_index_changes(config, session, None, None)  # recorded, never queued
        session.commit()
    runner = CliRunner()
    result = runner.invoke(tuf, ["publish"], obj=config)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published 2 change(s)")
    assert pending_count(config) == 0
    assert b"demo-1.0.tar.gz" in verify_like_a_client(config, "demo/demo.html", page=True)
    status = runner.invoke(tuf, ["status", "--json"], obj=config)
    assert json.loads(status.output)["targets"] == 3


def test_unknown_mode_is_a_clear_error(tmp_path):
    from dev.app import configure

    with pytest.raises(ValueError, match="dev.mode"):
        configure({"dev.data": str(tmp_path), "dev.mode": "cluster"})


def test_worker_and_beat_need_distributed_mode(config):
    for command in (worker, beat):
        result = CliRunner().invoke(command, [], obj=config)
        assert result.exit_code == 2 and "TUF_DEV_MODE=distributed" in result.output


def test_serve_refuses_the_development_keys_in_production(tmp_path, database_url):
    from dev.app import configure

    config = configure({"dev.data": str(tmp_path), "database.url": database_url, "tuf.env": "production"})
    result = CliRunner().invoke(serve, [], obj=config)
    assert (result.exit_code, result.output) == (
        1, "Error: development keys are refused in production (tuf.env = production)\n")
    assert not (tmp_path / "tuf-metadata" / "timestamp.json").exists()
    config.registry["sqlalchemy.engine"].dispose()
