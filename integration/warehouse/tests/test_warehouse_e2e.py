"""End to end inside a real Warehouse: the extension enabled by the patch, nothing mocked.

One Warehouse for the module (``warehouse_stack.Stack``): its real WSGI app
served by waitress on 127.0.0.1, a real ``celery -A warehouse worker`` and
``celery -A warehouse beat`` on a private Redis, a fresh PostgreSQL database
migrated by ``warehouse db upgrade head`` and ``warehouse tuf db upgrade``,
keys from a real ceremony (``tuf ceremony init/sign``) installed by ``tuf
bootstrap``, a user with an API token made by Warehouse's own services.
Distributions are real (``python -m build``) and uploaded by ``twine``;
publishing happens only through Warehouse's task path. Clients are
python-tuf's ngclient (the project's venv: Warehouse pins urllib3<2) and
tuf-js, fetching from a static HTTP server over the storage directories (the
CDN's part).

Needs WAREHOUSE_TREE and WAREHOUSE_PYTHON (see ``make test-warehouse``); run with
that python from the repository root::

    $WAREHOUSE_PYTHON -m pytest integration/warehouse/tests
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from warehouse_stack import Stack, http_get, wait_until

NAME = "tuf-demo"
LEGACY = "legacy-demo"
CACHED = "cache-demo"
PAGE_TYPES = {"html": "text/html", "json": "application/vnd.pypi.simple.v1+json"}
PUBLISH_TIMEOUT = float(os.environ.get("WAREHOUSE_E2E_PUBLISH_TIMEOUT", "90"))


def page_targets(name: str) -> list[str]:
    return [f"{name}/{name}.html", f"{name}/{name}.json"]


class World:
    """What the tests share: the stack, the user's token, and what was uploaded."""

    stack: Stack
    token: str
    dists: dict[str, list[Path]]
    facts: dict


@pytest.fixture(scope="module")
def world(warehouse, tmp_path_factory):
    tree, python = warehouse
    started = time.monotonic()
    w = World()
    w.facts = {}
    w.dists = {}
    stack = w.stack = Stack(tree, python, tmp_path_factory.mktemp("warehouse"), label="e2e")
    try:
        stack.create_database()
        stack.start_redis()
        stack.start_static()
        stack.warehouse("db", "upgrade", "head")
        w.facts["tuf db upgrade"] = [stack.warehouse("tuf", "db", "upgrade", check=False)
                                     for _ in range(2)]
        w.token = stack.ops("create-user", "alice", "an e2e password, not a real one",
                            "alice@example.org")["token"]

        # Before the extension is on: files it must later sign with 'tuf backfill'.
        off = {"TUF_ENABLED": "false"}
        stack.start_web(env=off)
        stack.start_worker(env=off)
        w.dists[LEGACY] = stack.build_dists(LEGACY, "0.1")
        upload = stack.twine_upload(w.token, *w.dists[LEGACY])
        assert upload.returncode == 0, upload.stdout + upload.stderr
        wait_until(lambda: all(f["cached"] for f in stack.ops("files", LEGACY)), 60,
                   "Warehouse's worker to copy the legacy files to the files storage")
        stack.stop("web")
        stack.stop("worker")

        w.facts["payload"] = stack.ceremony()
        w.facts["bootstrap"] = stack.warehouse("tuf", "bootstrap", str(w.facts["payload"]), check=False)
        stack.start_web()
        stack.start_worker()
        stack.start_beat()
        w.facts["setup_seconds"] = time.monotonic() - started
        yield w
    finally:
        stack.close()


def published(stack: Stack, paths: list[str]) -> dict[str, dict]:
    """The published target info of each of ``paths`` that the current timestamp reaches."""
    targets = stack.published_targets()
    return {path: targets[path] for path in paths if path in targets}


def wait_for(stack: Stack, predicate, what: str):
    """``wait_until`` bounded by PUBLISH_TIMEOUT; on timeout, the worker's last task errors."""
    try:
        return wait_until(predicate, PUBLISH_TIMEOUT, what, interval=0.25)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe worker's last failed tasks:\n{stack.task_errors()}") from None


def wait_published(stack: Stack, paths: list[str], what: str) -> dict[str, dict]:
    return wait_for(stack, lambda: (lambda found: found if len(found) == len(paths) else None)(
        published(stack, paths)), what)


def status(stack: Stack) -> dict:
    """``tuf status --json``; its exit status is 1 exactly when it lists problems."""
    result = stack.warehouse("tuf", "status", "--json", check=False)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == (1 if report["problems"] else 0), (result.returncode, report)
    return report


def verified(stack: Stack, targets: list[tuple[str, bool]], cache: str = "ngclient") -> dict[str, dict]:
    result = stack.ngclient(targets, cache=cache)
    assert isinstance(result, list), f"ngclient refused: {result}"
    return {entry["path"]: entry for entry in result}


def stored_page(stack: Stack, path: str, sha256: str) -> Path:
    directory, _, filename = path.rpartition("/")
    return stack.public / "simple" / directory / f"{sha256}.{filename}"


def assert_pages_served_by_warehouse(stack: Stack, name: str, signed: dict[str, dict]) -> None:
    """Each signed page target's bytes are what Warehouse's /simple/<name>/ serves for its type."""
    for form, accept in PAGE_TYPES.items():
        code, body, content_type = http_get(f"{stack.base}/simple/{name}/", accept=accept)
        assert code == 200 and content_type.startswith(accept), (code, content_type)
        path = f"{name}/{name}.{form}"
        stored = stored_page(stack, path, signed[path]["sha256"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == signed[path]["sha256"], (
            f"/simple/{name}/ ({accept}) differs from the signed page:\n"
            f"served: {body[:600]!r}\nsigned: {stored[:600]!r}"
        )
        assert body == stored


def sql(stack: Stack, query: str, **params):
    """One statement on the stack's database, committed; its first column of the first row."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(query), params)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def last_serial(stack: Stack, name: str) -> int:
    return sql(stack, "SELECT last_serial FROM projects WHERE normalized_name = :n", n=name)


def publish_tasks_received(stack: Stack) -> int:
    """How many ``warehouse_tuf.tasks.publish`` messages the worker has received (all its runs)."""
    return len(re.findall(r"Task warehouse_tuf\.tasks\.publish\[[0-9a-f-]+\] received",
                          stack.log("worker", 10**8)))


def run_sync_file_to_cache(stack: Stack, path: str) -> str:
    """Queue Warehouse's ``sync_file_to_cache`` for ``path`` and wait until the worker ran it.

    Messages on the one queue are received in order, so once this task has succeeded the worker
    has also received every message queued before it (a publish queued by an earlier commit).
    """
    task_id = stack.ops("queue-sync-file-to-cache", path)["task_id"]
    done = re.compile(rf"Task warehouse\.packaging\.tasks\.sync_file_to_cache\[{task_id}\] "
                      r"(succeeded|raised|failed)")
    line = wait_for(stack, lambda: (lambda m: m.group(0) if m else None)(
        done.search(stack.log("worker", 10**8))), f"the worker to run sync_file_to_cache[{task_id}]")
    assert "succeeded" in line, f"{line}\n{stack.task_errors(about='sync_file_to_cache')}"
    return task_id


# -- setup commands ------------------------------------------------------------------------------


def test_tuf_db_upgrade_creates_the_tables_and_is_idempotent(world):
    from sqlalchemy import create_engine, inspect

    for run in world.facts["tuf db upgrade"]:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "warehouse-tuf tables are up to date" in run.stdout
    engine = create_engine(world.stack.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"tuf_roles", "tuf_targets", "tuf_pending_changes",
            "warehouse_tuf_alembic_version"} <= tables
    assert "release_files" in tables  # Warehouse's own schema beside them


def test_warehouse_migration_check_leaves_the_extension_tables_alone(world):
    """alembic's check in Warehouse's own environment passes on a database with the extension's
    tables: Warehouse's autogenerate proposes no drop of them (the patch's include_name hook).

    This Warehouse (280d3b457) has no ``warehouse db check`` subcommand; the check is
    ``alembic.command.check(config.alembic_config())``, what ``warehouse db revision
    --autogenerate`` compares without writing a revision file. The control: the same check with
    the hook replaced by one that includes every table finds the extension's tables to drop.
    """
    stack = world.stack
    check = stack.ops("db-check")
    assert check == {"ok": True, "diffs": ""}, check
    control = stack.ops("db-check", "--without-include-name")
    assert not control["ok"], control
    for table in ("tuf_roles", "tuf_targets", "tuf_pending_changes", "warehouse_tuf_alembic_version"):
        assert "'remove_table'" in control["diffs"] and f"'{table}'" in control["diffs"], control


def test_bootstrap_from_a_ceremony_payload(world):
    run = world.facts["bootstrap"]
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "bootstrapped: root v1, targets v1, 16 bins" in run.stdout
    report = status(world.stack)
    assert report["bootstrapped"] and not report["problems"], report
    text = world.stack.warehouse("tuf", "status").stdout
    assert "root" in text and "timestamp" in text and "bins" in text
    for name in ("1.root.json", "1.targets.json", "timestamp.json"):
        assert http_get(world.stack.metadata_url + name)[0] == 200, name


# -- upload -> published, by Warehouse's own task path ---------------------------------------------


@pytest.fixture(scope="module")
def uploaded(world):
    """sdist and wheel of NAME 1.0 and the wheel of 2.0, uploaded with twine; their File rows."""
    stack = world.stack
    world.dists[NAME] = stack.build_dists(NAME, "1.0") + stack.build_dists(NAME, "2.0")[1:]
    started = time.monotonic()
    upload = stack.twine_upload(world.token, *world.dists[NAME])
    assert upload.returncode == 0, upload.stdout + upload.stderr
    files = stack.ops("files", NAME)
    assert len(files) == 3, files
    wait_published(stack, [f["path"] for f in files] + page_targets(NAME),
                   "the worker to publish the uploaded files and pages")
    world.facts["upload_to_published_seconds"] = time.monotonic() - started
    return files


def test_upload_is_published_through_the_worker(world, uploaded):
    stack = world.stack
    found = published(stack, [f["path"] for f in uploaded])
    for file in uploaded:
        info = found[file["path"]]
        assert info["length"] == file["size"]
        assert info["hashes"]["sha256"] == file["sha256"]
        # Served from the files storage without a hash prefix, at Warehouse's File.path.
        assert (stack.public / "packages" / file["path"]).is_file()
    assert status(stack)["pending"] == 0
    # Published by Warehouse's Celery worker, from the task the upload queued after its commit.
    assert re.search(r"Task warehouse_tuf\.tasks\.publish\[[0-9a-f-]+\] succeeded",
                     stack.log("worker", 10**7)), stack.task_errors()


def test_ngclient_verifies_files_and_pages(world, uploaded):
    stack = world.stack
    targets = [(f["path"], False) for f in uploaded] + [(p, True) for p in page_targets(NAME)]
    results = verified(stack, targets)
    for file in uploaded:
        assert results[file["path"]]["found"] and results[file["path"]]["sha256"] == file["sha256"]
    for page in page_targets(NAME):
        assert results[page]["found"], results


def test_tufjs_verifies_files_and_pages(world, uploaded):
    stack = world.stack
    targets = [(f["path"], False) for f in uploaded] + [(p, True) for p in page_targets(NAME)]
    run = stack.tufjs(targets)
    assert run.returncode == 0, run.stdout + run.stderr
    results = {entry["path"]: entry for entry in json.loads(run.stdout.strip().splitlines()[-1])}
    for file in uploaded:
        assert results[file["path"]]["found"] and results[file["path"]]["sha256"] == file["sha256"]
    ngclient = verified(stack, [(p, True) for p in page_targets(NAME)])
    for page in page_targets(NAME):
        assert results[page]["found"] and results[page]["sha256"] == ngclient[page]["sha256"]


def test_pages_are_what_warehouse_serves_at_simple(world, uploaded):
    stack = world.stack
    signed = verified(stack, [(p, True) for p in page_targets(NAME)])
    assert_pages_served_by_warehouse(stack, NAME, signed)
    html = stored_page(stack, f"{NAME}/{NAME}.html", signed[f"{NAME}/{NAME}.html"]["sha256"]).read_bytes()
    for file in uploaded:  # links to the files storage, with the sha256 pip checks
        assert f"{stack.files_url}{file['path']}#sha256={file['sha256']}".encode() in html


def test_the_file_cache_task_queues_no_publish(world, uploaded):
    """One publish task per transaction that recorded changes: the upload's, and none for the
    commit of Warehouse's ``sync_file_to_cache`` (which only sets ``File.cached``)."""
    stack = world.stack
    wheel = stack.build_dists(CACHED, "1.0")[1]
    run_sync_file_to_cache(stack, uploaded[0]["path"])  # the worker has received all before this
    before = publish_tasks_received(stack)
    upload = stack.twine_upload(world.token, wheel)
    assert upload.returncode == 0, upload.stdout + upload.stderr
    [file] = stack.ops("files", CACHED)
    wait_published(stack, [file["path"]] + page_targets(CACHED), "the worker to publish the upload")
    wait_for(stack, lambda: stack.ops("files", CACHED)[0]["cached"],
             "Warehouse's sync_file_to_cache to set File.cached")
    run_sync_file_to_cache(stack, file["path"])  # cached already: a no-op, received after the rest
    assert publish_tasks_received(stack) - before == 1, stack.log("worker", 6000)

    # The cache task's write again, by Warehouse's task run in the worker: not cached, then cached.
    sql(stack, "UPDATE release_files SET cached = false WHERE path = :p", p=file["path"])
    received = publish_tasks_received(stack)
    run_sync_file_to_cache(stack, file["path"])
    assert sql(stack, "SELECT cached FROM release_files WHERE path = :p", p=file["path"]) is True
    run_sync_file_to_cache(stack, file["path"])
    assert publish_tasks_received(stack) == received, stack.log("worker", 6000)
    assert status(stack)["pending"] == 0


def test_clients_refuse_tampered_files_and_pages(world, uploaded):
    stack = world.stack
    wheel = next(f for f in uploaded if f["filename"].endswith(".whl"))
    signed = verified(stack, [(f"{NAME}/{NAME}.html", True)])
    copies = [
        ((wheel["path"], False), stack.public / "packages" / wheel["path"]),
        ((f"{NAME}/{NAME}.html", True),
         stored_page(stack, f"{NAME}/{NAME}.html", signed[f"{NAME}/{NAME}.html"]["sha256"])),
    ]
    for target, copy in copies:
        original = copy.read_bytes()
        copy.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        try:
            refused = stack.ngclient([target], cache="tamper")
            assert isinstance(refused, dict) and refused["error"] == "LengthOrHashMismatchError", refused
            run = stack.tufjs([target])
            assert run.returncode != 0, f"tuf-js accepted a tampered {target[0]}: {run.stdout}"
        finally:
            copy.write_bytes(original)
        assert verified(stack, [target], cache="tamper")[target[0]]["found"]


# -- yank, delete release, delete project: Warehouse's manage code -----------------------------------


def test_yank_changes_the_page_target(world, uploaded):
    stack = world.stack
    before = published(stack, page_targets(NAME))
    response = stack.ops("yank", NAME, "1.0", "alice")
    assert response["status"] == 303, response

    def changed():
        now = published(stack, page_targets(NAME))
        return now if all(now.get(p, before[p])["hashes"] != before[p]["hashes"]
                          for p in page_targets(NAME)) else None

    after = wait_for(stack, changed, "the yank to re-sign both page targets")
    results = verified(stack, [(p, True) for p in page_targets(NAME)])
    html = stored_page(stack, f"{NAME}/{NAME}.html", results[f"{NAME}/{NAME}.html"]["sha256"])
    assert b"data-yanked" in html.read_bytes()
    page_json = json.loads(stored_page(stack, f"{NAME}/{NAME}.json",
                                       results[f"{NAME}/{NAME}.json"]["sha256"]).read_bytes())
    assert any(f.get("yanked") for f in page_json["files"] if "-1.0" in f["filename"])
    for page in page_targets(NAME):
        assert results[page]["sha256"] == after[page]["hashes"]["sha256"]
    assert_pages_served_by_warehouse(stack, NAME, results)


def test_a_new_collaborator_re_signs_the_page_with_the_new_serial(world, uploaded):
    """A change that only moves the project's serial: Warehouse's "add collaborator" (invite, by
    ``manage_project_roles``) and the invitee's acceptance (the ``Role`` row, by
    ``verify_project_role``), each a committed transaction with its journal entry. Published by
    the worker: the signed pages show the new serial and are what /simple/<name>/ serves."""
    stack = world.stack
    stack.ops("create-user", "bob", "another e2e password, not a real one", "bob@example.org")
    steps = (
        (("invite-role", NAME, "bob", "Maintainer", "alice"), "invite Maintainer bob"),
        (("accept-role", NAME, "bob"), "accepted Maintainer bob"),
    )
    for command, action in steps:
        serial_before = last_serial(stack, NAME)
        response = stack.ops(*command)
        assert response["status"] == 303 and all(q == "success" for q, _ in response["flashed"]), response
        serial = last_serial(stack, NAME)
        assert serial > serial_before
        assert sql(stack, "SELECT action FROM journals WHERE id = :s", s=serial) == action
        marker = f"<!--SERIAL {serial}-->".encode()

        def re_signed(marker=marker):
            html = f"{NAME}/{NAME}.html"
            now = published(stack, [html])
            return now if html in now and marker in stored_page(
                stack, html, now[html]["hashes"]["sha256"]).read_bytes() else None

        wait_for(stack, re_signed, f"the worker to re-sign the page with serial {serial} ({action})")
        results = verified(stack, [(p, True) for p in page_targets(NAME)])
        html = stored_page(stack, f"{NAME}/{NAME}.html", results[f"{NAME}/{NAME}.html"]["sha256"])
        assert marker in html.read_bytes()
        page_json = json.loads(stored_page(stack, f"{NAME}/{NAME}.json",
                                           results[f"{NAME}/{NAME}.json"]["sha256"]).read_bytes())
        assert page_json["meta"]["_last-serial"] == serial
        assert_pages_served_by_warehouse(stack, NAME, results)
    assert sql(stack, "SELECT r.role_name FROM roles r JOIN users u ON u.id = r.user_id "
                      "JOIN projects p ON p.id = r.project_id "
                      "WHERE u.username = 'bob' AND p.normalized_name = :n", n=NAME) == "Maintainer"


def test_deleting_a_release_removes_its_file_targets(world, uploaded):
    stack = world.stack
    old = [f for f in uploaded if f["version"] == "1.0"]
    kept = [f for f in uploaded if f["version"] == "2.0"]
    before = published(stack, page_targets(NAME))
    response = stack.ops("delete-release", NAME, "1.0", "alice")
    assert response["status"] == 303, response
    wait_for(stack, lambda: not published(stack, [f["path"] for f in old]),
             "the deleted release's files to leave the published bins")
    wait_for(stack, lambda: published(stack, page_targets(NAME)) != before,
             "the page targets to be re-signed without the release")
    targets = [(f["path"], False) for f in uploaded] + [(p, True) for p in page_targets(NAME)]
    results = verified(stack, targets)
    for file in old:
        assert results[file["path"]]["found"] is False, results[file["path"]]
    for file in kept:
        assert results[file["path"]]["found"] is True
    html = stored_page(stack, f"{NAME}/{NAME}.html", results[f"{NAME}/{NAME}.html"]["sha256"])
    assert b"-1.0" not in html.read_bytes() and b"-2.0" in html.read_bytes()
    assert_pages_served_by_warehouse(stack, NAME, results)


def test_deleting_the_project_removes_all_its_targets(world, uploaded):
    stack = world.stack
    stack.ops("delete-project", NAME, "alice")
    paths = [f["path"] for f in uploaded] + page_targets(NAME)
    wait_for(stack, lambda: not published(stack, paths),
             "the deleted project's files and pages to leave the published bins")
    results = verified(stack, [(f["path"], False) for f in uploaded] + [(p, True) for p in page_targets(NAME)])
    assert not any(entry["found"] for entry in results.values()), results
    assert http_get(f"{stack.base}/simple/{NAME}/")[0] == 404


# -- the other commands, in Warehouse's environment --------------------------------------------------


def test_backfill_signs_files_uploaded_before_the_extension(world):
    stack = world.stack
    files = stack.ops("files", LEGACY)
    paths = [f["path"] for f in files]
    assert len(files) == 2 and not published(stack, paths + page_targets(LEGACY))
    run = stack.warehouse("tuf", "backfill")
    assert "backfilled 2 file(s) and 1 project page(s)" in run.stdout, run.stdout + run.stderr[-2000:]
    results = verified(stack, [(p, False) for p in paths] + [(p, True) for p in page_targets(LEGACY)])
    for file in files:
        assert results[file["path"]]["found"] and results[file["path"]]["sha256"] == file["sha256"]
    for page in page_targets(LEGACY):
        assert results[page]["found"]
    assert_pages_served_by_warehouse(stack, LEGACY, results)
    run = stack.tufjs([(p, False) for p in paths] + [(p, True) for p in page_targets(LEGACY)])
    assert run.returncode == 0, run.stdout + run.stderr


def test_publish_command_publishes_what_the_worker_did_not(world):
    """With the worker stopped, a change stays pending; ``tuf publish`` publishes it."""
    stack = world.stack
    stack.stop("worker")
    try:
        before = published(stack, page_targets(LEGACY))
        assert stack.ops("yank", LEGACY, "0.1", "alice")["status"] == 303
        assert status(stack)["pending"] > 0
        run = stack.warehouse("tuf", "publish")
        assert re.search(r"published \d+ change\(s\) in \d+ bin\(s\)", run.stdout), run.stdout
        assert status(stack)["pending"] == 0
        after = published(stack, page_targets(LEGACY))
        assert all(after[p]["hashes"] != before[p]["hashes"] for p in page_targets(LEGACY))
        results = verified(stack, [(p, True) for p in page_targets(LEGACY)])
        assert_pages_served_by_warehouse(stack, LEGACY, results)
        again = stack.warehouse("tuf", "publish")
        assert "nothing to publish" in again.stdout, again.stdout
    finally:
        stack.start_worker()


def test_refresh_and_gc_commands(world):
    stack = world.stack
    assert "nothing is due" in stack.warehouse("tuf", "refresh").stdout
    # Bins expire 12 to 24 hours after bootstrap (spread); a 23-hour window makes most of them due.
    version = stack.timestamp_version()
    run = stack.warehouse("tuf", "refresh", env={"TUF_REFRESH_WINDOW": "23h"})
    assert re.search(r"re-signed \d+ bin\(s\)", run.stdout), run.stdout
    assert stack.timestamp_version() > version
    files = stack.ops("files", LEGACY)
    results = verified(stack, [(f["path"], False) for f in files])
    assert all(results[f["path"]]["found"] for f in files)
    dry = stack.warehouse("tuf", "gc", "--dry-run")
    assert "to delete" in dry.stdout and "roots are always kept" in dry.stdout, dry.stdout
    gc = stack.warehouse("tuf", "gc")
    assert re.search(r"\d+ version\(s\) deleted, \d+ kept", gc.stdout), gc.stdout
    assert (stack.public / "metadata" / "1.root.json").is_file()
    assert status(stack)["problems"] == []


def test_the_trust_model_setting_reaches_the_extension_through_warehouse(world):
    """``TUF_TARGETS_ONLINE`` in Warehouse's environment: the stack runs PEP 458's model, so asking
    for the targets-online one is a problem ``tuf status`` names (the switch is a root rotation)."""
    stack = world.stack
    assert status(stack)["trust_model"]["name"] == "pep458"
    run = stack.warehouse("tuf", "status", "--json", env={"TUF_TARGETS_ONLINE": "true"}, check=False)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 1 and report["trust_model"]["setting"] == "targets-online"
    assert any(p.startswith("tuf.targets_online asks for the targets-online model but root v")
               for p in report["problems"]), report["problems"]


def test_verify_command_audits_the_published_repository(world):
    stack = world.stack
    run = stack.warehouse("tuf", "verify", stack.metadata_url, "--root", str(stack.root_v1()),
                          "--targets-url", stack.files_url, "--simple-url", stack.simple_url,
                          check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("ok: "), run.stdout


def test_verify_command_reports_a_tampered_target(world):
    stack = world.stack
    files = stack.ops("files", LEGACY)
    copy = stack.public / "packages" / files[0]["path"]
    original = copy.read_bytes()
    copy.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        run = stack.warehouse("tuf", "verify", stack.metadata_url, "--root", str(stack.root_v1()),
                              "--targets-url", stack.files_url, "--sample", "100", check=False)
    finally:
        copy.write_bytes(original)
    assert run.returncode == 1, run.stdout + run.stderr[-2000:]
    assert files[0]["path"] in run.stdout, run.stdout


def test_bootstrap_dev_in_a_fresh_database(world, tmp_path):
    """``tuf bootstrap-dev``: refused in production; with TUF_ENV=development, development keys.

    A second, fresh Warehouse database (Warehouse's schema, then the extension's tables).
    """
    stack = world.stack
    second = Stack(stack.tree, stack.python, tmp_path / "second", label="dev")
    second.create_database()
    try:
        second.warehouse("db", "upgrade", "head")
        second.warehouse("tuf", "db", "upgrade")
        refused = second.warehouse("tuf", "bootstrap-dev", check=False)
        assert refused.returncode == 1 and "production" in (refused.stdout + refused.stderr), (
            refused.stdout + refused.stderr[-2000:])
        # Development keys only: no online signer named (the production stack's is a file2: key).
        dev = {"TUF_ENV": "development", "TUF_DEV_KEYS_PATH": str(tmp_path / "dev-keys"),
               "TUF_ONLINE_SIGNERS": ""}
        run = second.warehouse("tuf", "bootstrap-dev", env=dev)
        assert "bootstrapped 16 bins with INSECURE development keys" in run.stdout, run.stdout
        report = json.loads(second.warehouse("tuf", "status", "--json", env=dev).stdout.splitlines()[-1])
        assert report["bootstrapped"], report
        assert (second.public / "metadata" / "1.root.json").is_file()
        assert (second.public / "metadata" / "timestamp.json").is_file()
        assert any((tmp_path / "dev-keys").iterdir())
    finally:
        second.close()
