"""The TUF admin page, ``/admin/tuf/``: the repository's state at a glance.

It shows every top-level role (version, expiry, threshold, key ids), the bins
as a picture (one cell per bin, shaded by time to expiry), the pending changes
and the age of the oldest, the last 50 publishes (duration and bins signed) as
a small chart, and the problems :meth:`TUFManager.status` reports.

Server-rendered from the Jinja2 templates of ``warehouse_tuf/templates``, with
no external asset and no script: the grid is a PNG in a ``data:`` URI and the
chart inline SVG. The view needs the host's ``admin:dashboard:read``
permission (Warehouse's ``Permissions.AdminDashboardRead``, which its admins
and moderators hold). Inside Warehouse the page takes Warehouse's admin layout
(``admin/base.html``) and the session Warehouse's login lives in (the view
sets Warehouse's ``uses_session`` option); elsewhere it is a page of its own.
"""

from __future__ import annotations

import base64
import datetime
import functools
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import jinja2
from markupsafe import Markup
from pyramid.httpexceptions import HTTPForbidden
from pyramid.interfaces import ISecurityPolicy
from pyramid.renderers import render
from pyramid.response import Response
from sqlalchemy import select

from warehouse_tuf.cli.common import relative, short_keyid  # as ``tuf status`` shows them
from warehouse_tuf.clock import utcnow
from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.models import PublishLog, RoleVersion

ROUTE = "admin.tuf"
PATH = "/admin/tuf/"
#: Warehouse's ``Permissions.AdminDashboardRead``: what every page of its admin needs.
PERMISSION = "admin:dashboard:read"
#: Publishes charted.
PUBLISHES_SHOWN = 50
#: The grid's side, in pixels, when the bins allow it (whole pixels per bin).
GRID_PIXELS = 512
#: Warehouse's admin layout, which the page extends when the host renders it.
WAREHOUSE_LAYOUT = "admin/base.html"

# The grid's palette: background, expired, no such bin, then SHADES steps from
# "expires now" (amber) to "a full bin expiry period left" (green).
_BACKGROUND, _EXPIRED, _MISSING = (255, 255, 255), (198, 40, 40), (176, 176, 176)
_NEAR, _FAR = (255, 179, 0), (46, 125, 50)
SHADES = 8


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("warehouse_tuf", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


# -- what the page shows -------------------------------------------------------------


@dataclass
class BinGrid:
    """The bins as a PNG: cell ``i`` (row-major) is bin ``i``, shaded by time to expiry."""

    columns: int
    rows: int
    cell: int
    png: bytes
    #: (colour as ``#rrggbb``, what it means), for the legend.
    legend: list[tuple[str, str]]

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def pixels(self) -> int:
        return self.columns * self.cell


def _palette() -> list[tuple[int, int, int]]:
    def shade(step: int) -> tuple[int, int, int]:
        red, green, blue = (round(near + (far - near) * step / (SHADES - 1))
                            for near, far in zip(_NEAR, _FAR, strict=True))
        return red, green, blue

    steps = [shade(step) for step in range(SHADES)]
    return [_BACKGROUND, _EXPIRED, _MISSING, *steps]


def _hex(colour: tuple[int, ...]) -> str:
    return "#" + "".join(f"{c:02x}" for c in colour)


def bin_grid(expiries: dict[int, datetime.datetime], count: int, period: datetime.timedelta,
             now: datetime.datetime) -> BinGrid:
    """The grid of ``count`` bins (a power of two) from each bin index's expiry.

    A bin's shade is the share of ``period`` (the bins' expiry setting) left
    before it expires: green when just signed, amber when about to expire; red
    once expired, grey for a bin with no row. 16,384 bins make 128 x 128 cells.
    """
    bits = max(count - 1, 0).bit_length()
    columns = 1 << ((bits + 1) // 2)
    rows = -(-count // columns)
    cell = max(1, GRID_PIXELS // columns)
    gap = 1 if cell >= 8 else 0  # lines between cells only where cells are large
    levels = bytearray()
    for index in range(rows * columns):
        expires = expiries.get(index)
        if index >= count:
            levels.append(0)
        elif expires is None:
            levels.append(2)
        elif expires <= now:
            levels.append(1)
        else:
            share = min((expires - now) / period, 1.0)
            levels.append(3 + min(int(share * SHADES), SHADES - 1))
    lines = []
    for row in range(rows):
        cells = levels[row * columns:(row + 1) * columns]
        line = b"\x00" + b"".join(bytes([level]) * (cell - gap) + b"\x00" * gap for level in cells)
        lines += [line] * (cell - gap) + [b"\x00" * len(line)] * gap
    palette = _palette()
    png = _png(columns * cell, rows * cell, b"".join(lines), palette)
    legend = [(_hex(palette[1]), "expired"), (_hex(palette[2]), "no such bin")]
    bounds = [relative((period / SHADES * i).total_seconds()).removeprefix("in ") for i in range(SHADES + 1)]
    legend += [(_hex(palette[3 + i]), f"expires in {bounds[i]} to {bounds[i + 1]}") for i in range(SHADES)]
    legend[2] = (legend[2][0], f"expires within {bounds[1]}")
    legend[-1] = (legend[-1][0], f"expires in {bounds[-2]} or later")
    return BinGrid(columns, rows, cell, png, legend)


def _png(width: int, height: int, scanlines: bytes, palette: list[tuple[int, int, int]]) -> bytes:
    """An 8-bit palette PNG of ``scanlines`` (each: filter byte 0, then one palette index a pixel).

    Written here with zlib and struct: neither the extension nor Warehouse
    depends on an imaging library, and a palette PNG is three chunks.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"PLTE", bytes(c for colour in palette for c in colour))
            + chunk(b"IDAT", zlib.compress(scanlines, 9)) + chunk(b"IEND", b""))


@dataclass
class PublishChart:
    """The last publishes as inline SVG bars (duration) and dots (bins signed), oldest left."""

    width: int
    height: int
    bars: list[dict[str, Any]]
    max_duration: float
    max_bins: int


def publish_chart(runs: list[PublishLog], width: int = 600, height: int = 120) -> PublishChart:
    """``runs`` newest first, as :func:`page` reads them."""
    runs = list(reversed(runs))
    max_duration = max((run.duration for run in runs), default=0.0) or 1.0
    max_bins = max((run.bins_signed for run in runs), default=0) or 1
    slot = width / PUBLISHES_SHOWN
    bars = []
    for i, run in enumerate(runs):
        bar = max(1.0, run.duration / max_duration * height)
        bars.append({
            "x": round(i * slot + 1, 1), "width": round(slot - 2, 1),
            "y": round(height - bar, 1), "height": round(bar, 1),
            "cx": round(i * slot + slot / 2, 1),
            "cy": round(height - run.bins_signed / max_bins * (height - 4) - 2, 1),
            "title": (f"{run.kind} at {run.started_at.isoformat()}: {run.duration:.2f} s, "
                      f"{run.bins_signed} bin(s) signed, {run.changes} change(s), "
                      f"timestamp {run.timestamp_version}"),
        })
    return PublishChart(width, height, bars, max_duration if runs else 0.0, max_bins if runs else 0)


def page(request: Any, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Everything the page shows, from :meth:`TUFManager.status` and the extension's tables."""
    now = now or utcnow()
    manager = request.find_service(ITUFService, context=None)
    status = manager.status()
    context: dict[str, Any] = {"status": status, "problems": status["problems"], "now": now,
                               "relative": relative}
    if not status["bootstrapped"]:
        return {**context, "roles": [], "grid": None, "chart": publish_chart([]), "publishes": []}
    roles = []
    for role in status["roles"]:
        expires = datetime.datetime.fromisoformat(role["expires"])
        roles.append({**role, "expires_in": relative((expires - now).total_seconds()),
                      "expired": expires <= now,
                      "keyids": [short_keyid(keyid) for keyid in role["keyids"]]})
    expiries = dict(request.db.execute(
        select(RoleVersion.bin_index, RoleVersion.expires).where(RoleVersion.bin_index.is_not(None))
    ).all())
    count = 1 << (status["bins"]["count"] - 1).bit_length()  # the layout's: a power of two
    grid = bin_grid(expiries, count, manager.settings.expiry["bins"], now)
    publishes = list(request.db.scalars(
        select(PublishLog).order_by(PublishLog.id.desc()).limit(PUBLISHES_SHOWN)
    ))
    return {**context, "roles": roles, "grid": grid, "chart": publish_chart(publishes),
            "publishes": publishes}


# -- the view ----------------------------------------------------------------------------


def tuf_admin(request: Any) -> Response:
    """``GET /admin/tuf/``: in the host's admin layout when it has Warehouse's, else a page of its own."""
    if request.registry.queryUtility(ISecurityPolicy) is None:
        # Without a security policy Pyramid checks no permission: refuse rather than show it to all.
        raise HTTPForbidden("the host has no security policy: the TUF admin page stays closed")
    body = Markup(_templates().get_template("admin/tuf.html").render(**page(request)))
    if _has_warehouse_layout(request):
        html = render("warehouse_tuf:templates/admin/warehouse.html", {"tuf_body": body}, request=request)
    else:
        html = _templates().get_template("admin/page.html").render(tuf_body=body)
    return Response(html, content_type="text/html", charset="utf-8")


def _has_warehouse_layout(request: Any) -> bool:
    """Whether the host renders ``.html`` with pyramid_jinja2 and has Warehouse's admin layout."""
    try:
        from pyramid_jinja2 import IJinja2Environment
    except ImportError:
        return False
    environment = request.registry.queryUtility(IJinja2Environment, name=".html")
    if environment is None:
        return False
    try:
        environment.get_template(WAREHOUSE_LAYOUT)
    except jinja2.TemplateNotFound:
        return False
    return True


def accept_session_option(view: Any, info: Any) -> Any:
    """A view deriver that changes nothing: it declares ``uses_session`` a view option.

    Warehouse's own session deriver gives the page the session its login lives
    in when ``uses_session`` is set; on a host without that deriver, this one
    makes the option legal (and inert).
    """
    return view


accept_session_option.options = ("uses_session",)  # type: ignore[attr-defined]


def includeme(config: Any) -> None:
    """``/admin/tuf/`` (route ``admin.tuf``), needing ``admin:dashboard:read``, with the session."""
    config.add_view_deriver(accept_session_option, name="warehouse_tuf_session_option")
    config.add_route(ROUTE, PATH)
    config.add_view(tuf_admin, route_name=ROUTE, permission=PERMISSION, request_method=("GET", "HEAD"),
                    uses_session=True)
