"""The development host's simple pages (PEP 503 HTML, PEP 691 JSON).

:func:`render_simple_pages` is both what ``/simple/<name>/`` serves and the
extension's ``tuf.simple_renderer``: the bytes depend on the database only
(links are relative, nothing depends on the request's host or the time), so
the page served is byte for byte the page that was signed.
"""

from __future__ import annotations

import html
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from dev.models import File, Project, Release
from warehouse_tuf.targets import SimplePages

HTML_TYPE = "text/html"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
JSON_V1_TYPE = "application/vnd.pypi.simple.v1+json"
#: Offers in order of preference when the client has none (plain browsers, old pip).
CONTENT_TYPES = (HTML_TYPE, HTML_V1_TYPE, JSON_V1_TYPE)

_HTML_PAGE = """<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.0">
    <title>{title}</title>
  </head>
  <body>
    <h1>{title}</h1>
{links}
  </body>
</html>
"""


def _json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def render_simple_pages(request: Any, name: str) -> SimplePages | None:
    """The simple detail page of project ``name`` (normalized); None if there is no such project."""
    project = request.db.scalars(
        select(Project).where(Project.normalized_name == name)
        .options(selectinload(Project.releases).selectinload(Release.files))
    ).first()
    if project is None:
        return None
    files: list[tuple[Release, File]] = sorted(
        ((release, file) for release in project.releases for file in release.files),
        key=lambda pair: pair[1].filename,
    )
    links, entries = [], []
    for release, file in files:
        # /simple/<name>/ and /simple/<name>/<hash>.<name>.html are both two levels below the root.
        url = f"../../packages/{file.path}#sha256={file.sha256_digest}"
        attributes = [f'href="{html.escape(url)}"']
        if release.requires_python:
            attributes.append(f'data-requires-python="{html.escape(release.requires_python)}"')
        if release.yanked:
            attributes.append(f'data-yanked="{html.escape(release.yanked_reason)}"')
        links.append(f"    <a {' '.join(attributes)}>{html.escape(file.filename)}</a><br />")
        entry = {
            "filename": file.filename,
            "url": f"../../packages/{file.path}",
            "hashes": {"sha256": file.sha256_digest},
            "yanked": (release.yanked_reason or True) if release.yanked else False,
        }
        if release.requires_python:
            entry["requires-python"] = release.requires_python
        entries.append(entry)
    title = html.escape(f"Links for {project.name}")
    page = _HTML_PAGE.format(title=title, links="\n".join(links))
    return SimplePages(
        html=page.encode("utf-8"),
        json=_json({"meta": {"api-version": "1.0"}, "name": project.normalized_name, "files": entries}),
    )


def render_simple_index(request: Any) -> SimplePages:
    """``/simple/``: every project (not a TUF target)."""
    names = list(request.db.execute(
        select(Project.name, Project.normalized_name).order_by(Project.normalized_name)
    ))
    links = "\n".join(
        f'    <a href="{html.escape(normalized)}/">{html.escape(name)}</a><br />'
        for name, normalized in names
    )
    return SimplePages(
        html=_HTML_PAGE.format(title="Simple index", links=links).encode("utf-8"),
        json=_json({"meta": {"api-version": "1.0"},
                    "projects": [{"name": name} for name, _ in names]}),
    )
