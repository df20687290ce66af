"""The development host's endpoints and commands, in process (webtest), on both databases."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyramid.httpexceptions import HTTPNotFound
from pyramid.request import Request
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from webtest import TestApp

from dev.app import Environment
from dev.commands import beat, serve, worker
from dev.models import File, JournalEntry, Project
from dev.tasks import wait_for_embedded_tasks
from dev.testing.devhost import PASSWORD, USERNAME, add_file, pending_count, verify_like_a_client
from warehouse_tuf.cli import tuf
from warehouse_tuf.listeners import record_additions

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


def journal(config) -> list[tuple[str, str | None, str]]:
    """(name, version, action) of every journal entry, oldest first."""
    with Session(config.registry["sqlalchemy.engine"]) as session:
        rows = session.execute(select(JournalEntry.name, JournalEntry.version, JournalEntry.action)
                               .order_by(JournalEntry.id))
        return [tuple(row) for row in rows]


def last_serial(config, name="demo-pkg") -> int:
    with Session(config.registry["sqlalchemy.engine"]) as session:
        serial = session.scalar(select(Project.last_serial).where(Project.normalized_name == name))
        assert serial == session.scalar(select(func.max(JournalEntry.id)))
        return serial


@pytest.mark.one_database
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
    assert (file_count(config), pending_count(config), journal(config)) == (0, 0, [])


@pytest.mark.one_database
@pytest.mark.parametrize(("filename", "message"), [
    ("demo_pkg-1.0\x00-py3-none-any.whl", "control character U+0000"),
    ("demo_pkg-1.0\x7f-py3-none-any.whl", "control character U+007F"),
    ("demo_pkg-1.0-" + "a" * 290 + ".whl", "segment over 255 bytes"),
    ("demo_pkg-1.0-py3%3F-none-any.whl", "'%', which a client would have to quote"),
    ("demo_pkg-1.0-py3#-none-any.whl", "'#', which a client would have to quote"),
    ("demo_pkg-1.0-py3-none-any.whl:stream", "contains ':'"),
    ("demo_pkg-1.0-py3-none-any.whl.", "ending in a dot"),
])
def test_filenames_outside_the_path_rule_get_400_with_the_reason(app, config, filename, message):
    response = upload(app, status=400, filename=filename)
    assert "Invalid filename" in response.status and message in response.status
    assert (file_count(config), pending_count(config), journal(config)) == (0, 0, [])
    assert not any(Path(config.registry.settings["archive_files.path"]).rglob("*.whl*"))


def test_urls_that_are_not_utf8_or_too_long_get_400(app):
    response = app.get("/simple/%ff%fe/", status=400)
    assert response.status == "400 The URL path is not valid UTF-8."
    app.get("/packages/" + "a/" * 600 + "x.whl", status=400)
    response = app.get("/simple/" + "a" * 1200 + "/", status=400)
    assert "the limit is" in response.status
    app.get("/packages/" + "a/" * 500 + "x.whl", status=404)  # long, within the limit, absent


def test_an_upload_over_the_limit_is_refused_from_its_content_length(app, config):
    from dev.views import MAX_FORM_OVERHEAD, MAX_UPLOAD_BYTES

    body = b"not read"
    response = app.post("/legacy/", body, headers={
        **AUTH, "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": str(MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD + 1),
    }, status=413)
    assert "the limit is" in response.status
    assert (file_count(config), pending_count(config), journal(config)) == (0, 0, [])


def test_uploads_are_hashed_and_stored_in_chunks(app, config):
    import dev.views

    data = bytes(range(256)) * 1000  # several chunks
    original, dev.views._CHUNK_BYTES = dev.views._CHUNK_BYTES, 4096
    try:
        upload(app, data=data)
    finally:
        dev.views._CHUNK_BYTES = original
    wait_for_embedded_tasks(config.registry["celery.app"])
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/demo_pkg-1.0-py3-none-any.whl"
    assert app.get(f"/packages/{path}").body == data == verify_like_a_client(config, path)
    with Session(config.registry["sqlalchemy.engine"]) as session:
        assert session.scalars(select(File.size)).all() == [len(data)]


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
    # No acceptable offer: HTML, as Warehouse's _select_content_type.
    assert app.get("/simple/demo-pkg/", headers={"Accept": "image/png"}).body == html.body
    index = app.get("/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json
    assert index["projects"] == [{"name": "Demo.Pkg", "_last-serial": last_serial(config)}]
    assert b'<a href="/simple/demo-pkg/">Demo.Pkg</a>' in app.get("/simple/").body
    app.get("/simple/missing/", status=404)
    app.get("/simple/Missing/", status=404)  # no redirect for a project that does not exist


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
        # The extension's listener on a plain session: recorded, never queued.
        event.listen(session, "after_flush", lambda s, context: record_additions(config, s, context))
        add_file(session, "Demo", "1.0", "demo-1.0.tar.gz", b"an sdist", journal=True)
        session.commit()
    runner = CliRunner()
    result = runner.invoke(tuf, ["publish"], obj=config)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("published ") and "change(s)" in result.output
    assert pending_count(config) == 0
    page = verify_like_a_client(config, "demo/demo.html", page=True)
    assert b"demo-1.0.tar.gz" in page and f"<!--SERIAL {last_serial(config, 'demo')}-->".encode() in page
    status = runner.invoke(tuf, ["status", "--json"], obj=config)
    assert json.loads(status.output)["targets"] == 3


# -- Warehouse's facts, which the host follows --------------------------------------


def test_request_db_is_a_session_on_a_connection_closed_with_the_request(config):
    from pyramid.scripting import prepare

    env = prepare(registry=config.registry)
    session = env["request"].db
    connection = session.get_bind()
    assert isinstance(connection, Connection) and not connection.closed
    assert not hasattr(env["request"], "timings")  # a plain scripting request, as Warehouse's CLI gets
    env["closer"]()
    assert connection.closed


def test_warehouse_env_is_an_enum_member_and_tuf_env_is_set(config):
    settings = config.registry.settings
    assert settings["warehouse.env"] is Environment.development
    assert settings["tuf.env"] == "development" and config.registry["tuf.settings"].env == "development"


def test_uploads_and_changes_write_journal_entries_that_move_the_serial(app, config):
    upload(app)
    upload(app, filename="demo.pkg-1.0.tar.gz", data=b"an sdist", filetype="sdist", pyversion="source")
    upload(app, filename="demo_pkg-2.0-py3-none-any.whl", data=b"wheel 2", version="2.0")
    assert journal(config) == [
        ("Demo.Pkg", None, "create"),
        ("Demo.Pkg", "1.0", "new release"),
        ("Demo.Pkg", "1.0", "add py3 file demo_pkg-1.0-py3-none-any.whl"),
        ("Demo.Pkg", "1.0", "add source file demo.pkg-1.0.tar.gz"),
        ("Demo.Pkg", "2.0", "new release"),
        ("Demo.Pkg", "2.0", "add py3 file demo_pkg-2.0-py3-none-any.whl"),
    ]
    assert last_serial(config) == 6
    app.post("/manage/project/demo-pkg/release/1.0/yank/", {"yanked_reason": "broken"}, status=403)
    app.post("/manage/project/demo-pkg/release/1.0/yank/", {"yanked_reason": "broken"}, headers=AUTH)
    app.post("/manage/project/demo-pkg/release/2.0/yank/", headers=AUTH)
    app.post("/manage/project/demo-pkg/release/2.0/unyank/", headers=AUTH)
    app.post("/manage/project/demo-pkg/release/3.0/yank/", headers=AUTH, status=404)
    app.get("/manage/project/demo-pkg/release/1.0/yank/", headers=AUTH, status=405)
    app.delete("/manage/project/demo-pkg/release/2.0/file/demo_pkg-2.0-py3-none-any.whl", headers=AUTH)
    app.delete("/manage/project/demo-pkg/release/2.0/", headers=AUTH)
    assert journal(config)[6:] == [
        ("Demo.Pkg", "1.0", "yank release"),
        ("Demo.Pkg", "2.0", "yank release"),
        ("Demo.Pkg", "2.0", "unyank release"),
        ("Demo.Pkg", "2.0", "remove file demo_pkg-2.0-py3-none-any.whl"),
        ("Demo.Pkg", "2.0", "remove release"),
    ]
    serial = last_serial(config)
    assert serial == 11
    wait_for_embedded_tasks(config.registry["celery.app"])
    html = app.get("/simple/demo-pkg/")
    assert html.headers["X-PyPI-Last-Serial"] == str(serial)
    assert html.body.endswith(f"</html>\n<!--SERIAL {serial}-->".encode())
    assert html.body.count(b'data-yanked="broken" ') == 2 and b"2.0" not in html.body
    page = app.get("/simple/demo-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert page.json["meta"] == {"api-version": "1.1", "_last-serial": serial}
    assert [(f["filename"], f["yanked"]) for f in page.json["files"]] == [
        ("demo.pkg-1.0.tar.gz", "broken"), ("demo_pkg-1.0-py3-none-any.whl", "broken")]
    assert page.json["versions"] == ["1.0"]
    signed = verify_like_a_client(config, "demo-pkg/demo-pkg.json", page=True)
    assert signed == page.body
    app.delete("/manage/project/demo-pkg/", headers=AUTH)
    assert journal(config)[-1] == ("Demo.Pkg", None, "remove project")


def test_normalized_name_is_computed_by_the_database(config):
    with Session(config.registry["sqlalchemy.engine"]) as session:
        project = Project(name="Some_Thing..Else")
        session.add(project)
        assert project.normalized_name is None
        session.flush()
        assert project.normalized_name == "some-thing-else"
        project.name = "Renamed.Project"
        session.flush()
        assert project.normalized_name == "renamed-project"
        found = session.scalar(select(Project).where(
            Project.normalized_name == func.normalize_pep426_name("RENAMED__project")))
        assert found is project
        session.rollback()


def test_uploads_go_to_the_archive_and_a_task_copies_them_to_the_files_storage(app, config):
    from dev.tasks import sync_file_to_cache

    settings = config.registry.settings
    digest = hashlib.blake2b(WHEEL, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/demo_pkg-1.0-py3-none-any.whl"
    sent = []
    task = config.registry["celery.app"].tasks["dev.tasks.sync_file_to_cache"]
    original = task.delay
    task.delay = lambda *args: sent.append(args)  # not sent: the upload alone
    try:
        upload(app)
    finally:
        task.delay = original
    assert len(sent) == 1 and config.task(sync_file_to_cache) is task
    with config.registry["dev.archive"].get(path) as archived:
        assert archived.read() == WHEEL
    app.get(f"/packages/{path}", status=404)
    with Session(config.registry["sqlalchemy.engine"]) as session:
        assert session.scalars(select(File.cached)).all() == [False]
    task.delay(*sent[0])
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert app.get(f"/packages/{path}").body == WHEEL
    assert (Path(settings["files.path"]) / path).read_bytes() == WHEEL
    with Session(config.registry["sqlalchemy.engine"]) as session:
        assert session.scalars(select(File.cached)).all() == [True]


def test_the_simple_view_answers_the_extensions_subrequest_with_bytes(app, config):
    """What warehouse_tuf.pages.render_simple_view asks: no tweens, either Accept, any host."""
    upload(app)
    wait_for_embedded_tasks(config.registry["celery.app"])
    router = config.make_wsgi_app()
    bodies = {}
    for accept in ("text/html", "application/vnd.pypi.simple.v1+json"):
        for host in ("127.0.0.1:8080", "index.example.org"):
            request = Request.blank("/simple/demo-pkg/", headers={"Accept": accept},
                                    base_url=f"https://{host}")
            response = router.invoke_subrequest(request, use_tweens=False)
            assert (response.status_code, response.content_type) == (200, accept)
            bodies.setdefault(accept, set()).add(response.body)
        assert len(bodies[accept]) == 1
    assert bodies["text/html"] == {app.get("/simple/demo-pkg/").body}
    json_body = bodies["application/vnd.pypi.simple.v1+json"].pop()
    assert json_body.endswith(b"\n") and json.loads(json_body)["name"] == "demo-pkg"
    with pytest.raises(HTTPNotFound):
        router.invoke_subrequest(Request.blank("/simple/missing/"), use_tweens=False)


def test_unknown_mode_is_a_clear_error(tmp_path):
    from dev.app import configure

    with pytest.raises(ValueError, match="dev.mode"):
        configure({"dev.data": str(tmp_path), "dev.mode": "cluster"})
    with pytest.raises(ValueError, match=r"dev.embedded_tasks \(TUF_DEV_EMBEDDED_TASKS\) = 'fork'"):
        configure({"dev.data": str(tmp_path), "dev.embedded_tasks": "fork"})


def test_worker_and_beat_need_distributed_mode(config):
    for command in (worker, beat):
        result = CliRunner().invoke(command, [], obj=config)
        assert result.exit_code == 2 and "TUF_DEV_MODE=distributed" in result.output


def test_serve_refuses_the_development_keys_in_production(tmp_path, database_url):
    from dev.app import configure

    config = configure({"dev.data": str(tmp_path), "database.url": database_url, "tuf.env": "production"})
    result = CliRunner().invoke(serve, ["--port", "0"], obj=config)  # any free port: it binds first
    assert (result.exit_code, result.output) == (
        1, "Error: development keys are refused in production (tuf.env = production)\n")
    assert not (tmp_path / "tuf-metadata" / "timestamp.json").exists()
    config.registry["sqlalchemy.engine"].dispose()


def test_embedded_tasks_run_in_a_process_of_their_own(tmp_path):
    """``dev.embedded_tasks = process`` (what ``serve`` runs): uploads are published by one child
    process, not by this one, and a client verifies them; a task process that dies is replaced."""
    from concurrent.futures import ProcessPoolExecutor

    from dev.tasks import wait_for_embedded_tasks
    from dev.testing.devhost import add_file, dev_config, pending, store_served_file, verify_like_a_client
    from warehouse_tuf import tasks

    config = dev_config(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite'}",
                        **{"dev.embedded_tasks": "process"})
    app = config.registry["celery.app"]
    sessions, engine = config.registry["sqlalchemy.sessionmaker"], config.registry["sqlalchemy.engine"]
    assert app.embedded_executor is None  # no process until a task needs it
    try:
        with sessions(bind=engine) as session:
            first = add_file(session, "Demo", "1.0", "demo-1.0.tar.gz", b"sdist", journal=True)
            session.commit()
            first_path = first.path
        wait_for_embedded_tasks(app)
        assert pending(config) == []
        assert isinstance(app.embedded_executor, ProcessPoolExecutor)
        [child] = app.embedded_executor._processes.values()
        assert child.pid != os.getpid()
        store_served_file(config, first_path, b"sdist")
        assert verify_like_a_client(config, first_path) == b"sdist"

        child.kill()
        child.join()
        with sessions(bind=engine) as session:
            second_path = add_file(session, "Demo", "1.1", "demo-1.1.tar.gz", b"sdist 1.1", journal=True).path
            session.commit()  # its task may be lost with the dead process: the change stays pending
        wait_for_embedded_tasks(app)
        config.task(tasks.publish_pending).delay()  # as the periodic publish would
        wait_for_embedded_tasks(app)
        assert pending(config) == []
        [replacement] = app.embedded_executor._processes.values()
        assert replacement.pid not in (child.pid, os.getpid())
        store_served_file(config, second_path, b"sdist 1.1")
        assert verify_like_a_client(config, second_path) == b"sdist 1.1"
    finally:
        if app.embedded_executor is not None:
            app.embedded_executor.shutdown()
        engine.dispose()


def test_a_commands_default_setting_yields_to_the_environment(monkeypatch):
    """``serve`` defaults embedded tasks to a process of their own; TUF_DEV_EMBEDDED_TASKS overrides it,
    and the default never leaks into the environment (other hosts of this process keep their own)."""
    from dev.cli import LazyConfig

    monkeypatch.delenv("TUF_DEV_EMBEDDED_TASKS", raising=False)
    served = LazyConfig()
    served.default("dev.embedded_tasks", "process", "TUF_DEV_EMBEDDED_TASKS")
    assert served._settings == {"dev.embedded_tasks": "process"}
    assert "TUF_DEV_EMBEDDED_TASKS" not in os.environ
    monkeypatch.setenv("TUF_DEV_EMBEDDED_TASKS", "thread")
    overridden = LazyConfig()
    overridden.default("dev.embedded_tasks", "process", "TUF_DEV_EMBEDDED_TASKS")
    assert overridden._settings == {}
