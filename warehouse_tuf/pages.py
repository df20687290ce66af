"""Rendering a project's simple detail page (HTML and PEP 691 JSON) for signing.

The renderer is the host's: ``tuf.simple_renderer`` names a callable
``(request, normalized_name) -> SimplePages | None`` (None when the project is
gone). The bytes it returns are signed and stored under their hash-prefixed
names, so they must be exactly what the index serves for that project.
"""

from __future__ import annotations

from typing import Any

from warehouse_tuf.targets import SimplePages


def render_warehouse_pages(request: Any, name: str) -> SimplePages | None:
    """Warehouse's own simple detail page, in both forms.

    Uses Warehouse's ``_simple_detail`` context, its ``api/simple/detail.html``
    template and its PEP 691 JSON renderer, the same way ``warehouse.api.simple``
    serves them. Warehouse must be importable.
    """
    from pyramid.renderers import render
    from sqlalchemy import select
    from warehouse.packaging.models import Project
    from warehouse.packaging.utils import _simple_detail

    project = request.db.scalars(select(Project).where(Project.normalized_name == name)).first()
    if project is None:
        return None
    context = _simple_detail(project, request)
    html = render("templates/api/simple/detail.html", context, request=request)
    json_page = render("json", context, request=request)
    return SimplePages(html=html.encode("utf-8"), json=json_page.encode("utf-8"))
