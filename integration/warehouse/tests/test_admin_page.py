"""The TUF admin page inside a real Warehouse: ``/admin/tuf/``, in Warehouse's admin, with its permission.

A Warehouse of its own (``warehouse_stack.Stack``): fresh database, private
Redis, the real WSGI app served by waitress, the repository bootstrapped with
``tuf bootstrap-dev`` (TUF_ENV=development) and one upload published by ``tuf
publish``. Users come from Warehouse's own services; the admin is a superuser
with two-factor authentication, as Warehouse's admin permissions require; the
session cookies are made by Warehouse's session factory and security policy
(``warehouse_ops.py login-cookie``).

Needs WAREHOUSE_TREE and WAREHOUSE_PYTHON (see ``make test-warehouse``).
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse

import pytest
from warehouse_stack import Stack

NAME = "admin-demo"


class Site:
    stack: Stack
    cookies: dict[str, str]
    status: dict


@pytest.fixture(scope="module")
def site(warehouse, tmp_path_factory):
    tree, python = warehouse
    work = tmp_path_factory.mktemp("warehouse-admin")
    development = {"TUF_ENV": "development", "TUF_DEV_KEYS_PATH": str(work / "dev-keys"),
                   "TUF_ONLINE_SIGNERS": ""}
    s = Site()
    stack = s.stack = Stack(tree, python, work, label="admin", extra_env=development)
    try:
        stack.create_database()
        stack.start_redis()
        stack.warehouse("db", "upgrade", "head")
        stack.warehouse("tuf", "db", "upgrade")
        stack.warehouse("tuf", "bootstrap-dev")
        token = stack.ops("create-user", "alice", "an admin's e2e password", "alice@example.org")["token"]
        stack.ops("create-user", "bob", "a user's e2e password", "bob@example.org")
        stack.ops("make-admin", "alice")
        s.cookies = {user: stack.ops("login-cookie", user)["cookie"] for user in ("alice", "bob")}
        stack.start_web(env={"WAREHOUSE_E2E_UNBUILT_ASSETS": "1"})
        upload = stack.twine_upload(token, *stack.build_dists(NAME, "1.0"))
        assert upload.returncode == 0, upload.stdout + upload.stderr
        # No worker runs here: the queued publish task waits; 'tuf publish' publishes (and logs) it.
        published = stack.warehouse("tuf", "publish")
        assert published.stdout.splitlines()[-1].startswith("published "), published.stdout
        s.status = json.loads(stack.warehouse("tuf", "status", "--json").stdout.splitlines()[-1])
        yield s
    finally:
        stack.close()


def get(stack: Stack, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    """GET without following redirects: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=60)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_anonymous_is_sent_to_warehouse_login(site):
    status, headers, _ = get(site.stack, "/admin/tuf/")
    assert status == 303, status
    location = urllib.parse.urlsplit(headers["Location"])
    assert location.path == "/account/login/"
    assert urllib.parse.parse_qs(location.query)["next"] == ["/admin/tuf/"]


def test_a_user_who_is_not_an_admin_is_refused(site):
    status, _, body = get(site.stack, "/admin/tuf/", site.cookies["bob"])
    assert status == 403, status
    assert 'id="tuf-admin"' not in body  # logged in (not sent to the login page), but refused


def test_an_admin_sees_the_page_in_warehouses_admin_layout(site):
    status, headers, body = get(site.stack, "/admin/tuf/", site.cookies["alice"])
    assert status == 200, body[-3000:]
    # Warehouse's admin layout (admin/base.html) around the extension's content.
    assert "<title>TUF · Admin · " in body
    assert "/admin/static/" in body and 'class="breadcrumb-item active">TUF<' in body
    assert 'id="tuf-admin"' in body
    for role in site.status["roles"]:
        row = re.search(rf'<tr class="tuf-role[^"]*" data-role="{role["role"]}">(.*?)</tr>', body, re.S)
        assert row, role["role"]
        assert f"<td>{role['version']}</td>" in row.group(1)
        for keyid in role["keyids"]:
            assert f'<code class="tuf-keyid">{keyid[:12]}</code>' in row.group(1)
    assert re.search(r'<img id="tuf-bin-grid" src="data:image/png;base64,[A-Za-z0-9+/=]+" width="512"', body)
    assert "Bins: 16 as 4 &times; 4 cells" in body
    assert re.search(r'<strong class="tuf-pending-count">0</strong>', body)
    assert len(re.findall(r'<g class="tuf-publish">', body)) >= 1
    problems = re.findall(r"<li>(.*?)</li>", body.split('id="tuf-problems"', 1)[1].split("</section>", 1)[0])
    assert len(problems) == len(site.status["problems"])
    # Warehouse's admin CSP lets the data: image in; the extension adds no script or stylesheet.
    assert "data:" in re.search(r"img-src ([^;]*)", headers["Content-Security-Policy"]).group(1)
    content = body.split('id="tuf-admin"', 1)[1].split("<!-- end of tuf-admin -->", 1)[0]
    assert "<script" not in content and "<style" not in content and " style=" not in content
