"""Rendering a project's simple detail page (HTML and PEP 691 JSON) for signing.

The renderer is the host's: ``tuf.simple_renderer`` names a callable
``(request, normalized_name) -> SimplePages | None`` (None when the project is
gone). The bytes it returns are signed and stored under their hash-prefixed
names, so they must be exactly what the index serves for that project.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.router import Router

from warehouse_tuf.targets import SimplePages

#: The ``Accept`` header that selects each form of the page (PEP 691).
PAGE_TYPES = {"html": "text/html", "json": "application/vnd.pypi.simple.v1+json"}

_ROUTER_KEY = "warehouse_tuf.router"


def _router(registry: Any) -> Router:
    """One router per registry: a task's or a CLI command's request (pyramid.scripting)
    has none of its own, and a backfill renders thousands of pages."""
    router = registry.get(_ROUTER_KEY)
    if router is None:
        router = registry[_ROUTER_KEY] = Router(registry)
    return router


def render_simple_view(request: Any, name: str) -> SimplePages | None:
    """The page the host serves at ``/simple/<name>/``, in both forms, from its own view.

    Each form is a subrequest through the host's router (Warehouse's
    ``api.simple.detail`` view, its template, its JSON renderer), without the
    tweens: what it answers is what ``/simple/<name>/`` serves, by construction,
    on any version of the host. The request's host is ``warehouse.domain``
    when set, as the public page's links are built for it.
    """
    settings = request.registry.settings
    domain = settings.get("warehouse.domain")
    router = _router(request.registry)
    pages = {}
    for form, accept in PAGE_TYPES.items():
        subrequest = Request.blank(
            f"/simple/{quote(name)}/", headers={"Accept": accept},
            base_url=f"https://{domain}" if domain else None,
        )
        try:
            response = router.invoke_subrequest(subrequest, use_tweens=False)
        except HTTPException as exc:  # without the tweens, a 404 arrives raised
            response = exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RuntimeError(f"/simple/{name}/ answered {response.status} for {accept}")
        pages[form] = response.body
    return SimplePages(**pages)
