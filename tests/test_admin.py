"""The TUF admin page, ``/admin/tuf/``: in Debian's chromium (selenium), its permissions, its data.

The browser test serves the development host with waitress at 16,384 bins and
saves a screenshot to ``.artefacts/admin-tuf.png``.
"""

from __future__ import annotations

import base64
import datetime
import re
import shutil
import struct
import threading
import zlib

import pytest
import waitress
from pyramid.scripting import prepare
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session
from webtest import TestApp

from dev.tasks import wait_for_embedded_tasks
from dev.testing.devhost import PASSWORD, ROOT, USERNAME, dev_config, verify_like_a_client
from tests.conftest import make_configurator
from warehouse_tuf import pending
from warehouse_tuf.admin import PUBLISHES_SHOWN, bin_grid
from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.models import PUBLISH_LOG_KEPT, PublishLog, RoleVersion, utcnow

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
SCREENSHOT = ROOT / ".artefacts" / "admin-tuf.png"
WHEEL = b"the bytes of a wheel for the admin page"
RED, GREY = (198, 40, 40), (176, 176, 176)


def upload(app, name: str, version: str, data: bytes) -> str:
    """``twine upload``'s form through the host's WSGI app; the stored file's target path."""
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    app.post("/legacy/", {":action": "file_upload", "name": name, "version": version,
                          "filetype": "bdist_wheel", "pyversion": "py3"},
             upload_files=[("content", filename, data)], headers=AUTH)
    files = app.get(f"/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json["files"]
    return next(f["url"] for f in files if f["filename"] == filename).split("/packages/", 1)[1]


def service(config):
    env = prepare(registry=config.registry)
    return env, env["request"].find_service(ITUFService, context=None)


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]], list[bytes]]:
    """(width, height, palette, rows of palette indexes) of an 8-bit palette PNG with filter 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        assert struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 3)
    plte = chunks[b"PLTE"]
    palette = [tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (width + 1):(r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, palette, [row[1:] for row in rows]


def cell_colour(png: bytes, index: int, columns: int) -> tuple[int, int, int]:
    """The colour at the centre of bin ``index``'s cell."""
    width, _, palette, rows = read_png(png)
    cell = width // columns
    row, column = divmod(index, columns)
    return palette[rows[row * cell + cell // 2][column * cell + cell // 2]]


# -- the page in a real browser ------------------------------------------------------------------


def chromium():
    """Debian's chromium through chromium-driver (no download: both paths are given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium and chromedriver are required: apt-get install chromium chromium-driver "
                    "(.ci/run installs them)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1900", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture
def big_host(tmp_path):
    """The development host at 16,384 bins (SQLite), served by waitress on a free port."""
    config = dev_config(tmp_path / "data", f"sqlite:///{tmp_path / 'index.sqlite'}",
                        **{"tuf.bin_count": 16384})
    server = waitress.create_server(config.make_wsgi_app(), host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield config, f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)
    wait_for_embedded_tasks(config.registry["celery.app"])
    config.registry["sqlalchemy.engine"].dispose()


def test_the_admin_page_in_a_headless_browser(big_host):
    from selenium.webdriver.common.by import By

    config, base = big_host
    app = TestApp(config.make_wsgi_app())
    paths = [upload(app, "admin-demo", version, WHEEL + version.encode()) for version in ("1.0", "2.0")]
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert verify_like_a_client(config, paths[-1]) == WHEEL + b"2.0"
    engine = config.registry["sqlalchemy.engine"]
    with Session(engine) as session:
        # One change left pending (recorded, no publish queued), and one bin expired: a problem.
        pending.record(session.connection(), [pending.target_removed(paths[0])])
        session.execute(update(RoleVersion).where(RoleVersion.bin_index == 5)
                        .values(expires=utcnow() - datetime.timedelta(hours=1)))
        session.commit()
        publishes = session.scalar(select(func.count()).select_from(PublishLog))
    env, manager = service(config)
    try:
        status = manager.status()
    finally:
        env["closer"]()
    expired = status["bins"]["earliest_expiring"]

    driver = chromium()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": AUTH})
        driver.get(f"{base}/admin/tuf/")
        assert driver.title == "TUF · Admin"

        roles = driver.find_elements(By.CSS_SELECTOR, "#tuf-roles tr.tuf-role")
        assert [row.get_attribute("data-role") for row in roles] == [
            "root", "targets", "snapshot", "timestamp", "bins"]
        for row, role in zip(roles[:-1], status["roles"], strict=True):  # the last row is the bins
            cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            assert cells[1] == str(role["version"]) and cells[3] == str(role["threshold"])
            assert role["expires"] in cells[2] and re.search(r"\(in \d+[dhms](\d\dm)?\)", cells[2])
            keyids = [code.text for code in row.find_elements(By.CSS_SELECTOR, "code.tuf-keyid")]
            assert keyids == [keyid[:12] for keyid in role["keyids"]]
        assert "bins (16384)" in roles[-1].text and expired in roles[-1].text

        grid = driver.find_element(By.ID, "tuf-bin-grid")
        assert driver.execute_script(
            "const i = arguments[0]; return [i.complete, i.naturalWidth, i.naturalHeight];", grid
        ) == [True, 512, 512]
        png = base64.b64decode(grid.get_attribute("src").removeprefix("data:image/png;base64,"))
        assert read_png(png)[:2] == (512, 512)
        assert cell_colour(png, 5, 128) == RED
        assert cell_colour(png, 6, 128) not in (RED, GREY)
        assert "Bins: 16384 as 128 × 128 cells" in driver.find_element(By.ID, "tuf-bins").text

        pending_text = driver.find_element(By.ID, "tuf-pending").text
        assert driver.find_element(By.CSS_SELECTOR, ".tuf-pending-count").text == "1"
        assert re.search(r"the oldest recorded \d+s ago", pending_text), pending_text

        bars = driver.find_elements(By.CSS_SELECTOR, "#tuf-publish-chart g.tuf-publish")
        assert 1 <= len(bars) == min(publishes, PUBLISHES_SHOWN)
        assert "bars: duration" in driver.find_element(By.ID, "tuf-publish-chart").text

        problems = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#tuf-problems li")]
        assert problems == status["problems"] and any(p.startswith(f"{expired} expired at") for p in problems)

        # Server-rendered and self-contained: no script, no stylesheet or image fetched.
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);") == []

        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- permissions ------------------------------------------------------------------------------


def test_anonymous_and_wrong_credentials_are_asked_to_log_in(host_config):
    app = TestApp(host_config.make_wsgi_app())
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"tuf-dev:wrong").decode()}):
        response = app.get("/admin/tuf/", headers=headers, status=401)
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "TUF" not in response.text


@pytest.mark.parametrize("host_settings", [{"dev.admins": "someone-else"}])
def test_an_account_that_is_not_an_admin_is_refused(host_config):
    app = TestApp(host_config.make_wsgi_app())
    response = app.get("/admin/tuf/", headers=AUTH, status=403)
    assert response.text == f"{USERNAME} is not an admin (dev.admins).\n"
    # The account still uploads: only the admin pages need the admin permission.
    assert upload(app, "not-admin", "1.0", WHEEL)


def test_an_admin_sees_the_page(host_config):
    app = TestApp(host_config.make_wsgi_app())
    response = app.get("/admin/tuf/", headers=AUTH, status=200)
    assert response.content_type == "text/html"
    assert response.html.select("#tuf-roles tr.tuf-role")[0]["data-role"] == "root"
    model = response.html.select_one("#tuf-trust-model")
    assert model["data-model"] == "pep458"
    assert "root and targets are offline roles" in model.select_one(".tuf-trust-model").text
    assert "targets expires unless its key holders renew it" in model.select_one(".tuf-trust-warning").text
    assert response.html.select_one("#tuf-bin-grid")["width"] == "512"  # 16 bins: 4 x 4 cells of 128
    assert app.head("/admin/tuf/", headers=AUTH, status=200)


@pytest.mark.parametrize("host_settings", [{"tuf.targets_online": "true"}])
def test_an_admin_sees_the_targets_online_model_and_its_warning(host_config):
    response = TestApp(host_config.make_wsgi_app()).get("/admin/tuf/", headers=AUTH, status=200)
    model = response.html.select_one("#tuf-trust-model")
    assert model["data-model"] == "targets-online"
    assert "root is the only offline role" in model.select_one(".tuf-trust-model").text
    assert "compromised online key also compromises targets" in model.select_one(".tuf-trust-warning").text
    assert response.html.select_one("#tuf-problems .card-title").text.strip() == "OK: no problems"


def test_a_host_without_a_security_policy_keeps_the_page_closed(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    app = TestApp(config.make_wsgi_app())
    assert "no security policy" in app.get("/admin/tuf/", status=403).text


# -- what the page draws from ------------------------------------------------------------------


def test_each_publish_is_logged_and_gc_keeps_the_newest(host_config):
    config = host_config
    app = TestApp(config.make_wsgi_app())
    path = upload(app, "log-demo", "1.0", WHEEL)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert verify_like_a_client(config, path) == WHEEL
    engine = config.registry["sqlalchemy.engine"]
    with Session(engine) as session:
        runs = list(session.scalars(select(PublishLog).order_by(PublishLog.id)))
        timestamp = session.get(RoleVersion, "timestamp").version
    assert runs and runs[-1].timestamp_version == timestamp
    assert sum(run.changes for run in runs) >= 2  # the file and the project's pages
    assert all(run.kind == "publish" and run.duration > 0 and run.bins_signed >= 1 for run in runs)

    now = utcnow()
    with Session(engine) as session:
        session.execute(insert(PublishLog), [
            {"kind": "refresh", "started_at": now, "duration": 0.5, "changes": 0, "bins_signed": 1,
             "snapshot_version": 1, "timestamp_version": 1} for _ in range(PUBLISH_LOG_KEPT + 5)])
        session.commit()
        newest = session.scalar(select(func.max(PublishLog.id)))
    env, manager = service(config)
    try:
        manager.gc(dry_run=True)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(PublishLog)) == len(runs) + PUBLISH_LOG_KEPT + 5
        manager.gc()
    finally:
        env["closer"]()
    with Session(engine) as session:
        ids = list(session.scalars(select(PublishLog.id).order_by(PublishLog.id)))
    assert len(ids) == PUBLISH_LOG_KEPT and ids[-1] == newest and ids == list(range(ids[0], newest + 1))


@pytest.mark.parametrize(("count", "columns", "rows", "cell"), [(16, 4, 4, 128), (32, 8, 4, 64),
                                                                (256, 16, 16, 32), (16384, 128, 128, 4)])
def test_the_bin_grid_shades_each_bin_by_time_to_expiry(count, columns, rows, cell):
    now = utcnow()
    period = datetime.timedelta(days=1)
    expiries = {index: now + period * (index / count) for index in range(count)}
    expiries[0] = now - datetime.timedelta(seconds=1)
    del expiries[1]  # a bin with no row
    expiries[2] = now + datetime.timedelta(minutes=1)
    grid = bin_grid(expiries, count, period, now)
    assert (grid.columns, grid.rows, grid.cell) == (columns, rows, cell)
    width, height, palette, _ = read_png(grid.png)
    assert (width, height) == (columns * cell, rows * cell)
    assert cell_colour(grid.png, 0, columns) == RED
    assert cell_colour(grid.png, 1, columns) == GREY
    near, far = cell_colour(grid.png, 2, columns), cell_colour(grid.png, count - 1, columns)
    assert near == palette[3] and far == palette[-1] and near != far  # amber soon, green late
    assert [meaning for _, meaning in grid.legend][:3] == ["expired", "no such bin", "expires within 3h"]
    assert grid.data_uri.startswith("data:image/png;base64,")
