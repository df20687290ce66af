"""The development host's simple pages (PEP 503 HTML, PEP 691 JSON), as Warehouse builds them.

The views (:mod:`dev.views`) return these contexts to a renderer chosen by
``Accept`` (:func:`select_content_type`): the ``api/simple/*.html`` templates,
or the ``json`` renderer (bytes), as ``warehouse.api.simple`` does. The detail
page's bytes depend on the database only (links are relative, nothing depends
on the request's host or the time), so the extension renders the signed page
through that same view (a subrequest) and the page served is the page signed.
"""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from dev.models import File, Project, Release

API_VERSION = "1.1"
HTML_TYPE = "text/html"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
JSON_V1_TYPE = "application/vnd.pypi.simple.v1+json"
#: Offers in Warehouse's order of preference (``_select_content_type``).
CONTENT_TYPES = (HTML_TYPE, HTML_V1_TYPE, JSON_V1_TYPE)


def select_content_type(request: Any) -> str:
    """The first acceptable offer; text/html when none is (Warehouse's ``_select_content_type``)."""
    offers = request.accept.acceptable_offers(list(CONTENT_TYPES))
    return offers[0][0] if offers else HTML_TYPE


def _version_key(version: str) -> tuple:
    # Warehouse sorts with packaging_legacy, where legacy versions come before all others.
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def file_url(file: File) -> str:
    """A distribution's link: relative, so that the page does not depend on the request's host.

    ``/simple/<name>/`` and ``/simple/<name>/<hash>.<name>.html`` are both two
    levels below the root (Warehouse links to the absolute ``files.url``).
    """
    return f"../../packages/{file.path}"


def simple_detail_context(project: Project, request: Any) -> dict:
    """Warehouse's ``_simple_detail``: the context of both forms of the detail page."""
    files = sorted(
        request.db.scalars(
            select(File).options(joinedload(File.release)).join(Release).where(Release.project == project)
        ).all(),
        key=lambda f: (_version_key(f.release.version), f.filename),
    )
    versions = sorted({f.release.version for f in files}, key=_version_key)
    return {
        "meta": {"api-version": API_VERSION, "_last-serial": project.last_serial},
        "name": project.normalized_name,
        "versions": versions,
        "files": [
            {
                "filename": file.filename,
                "url": file_url(file),
                "hashes": {"sha256": file.sha256_digest},
                "requires-python": file.release.requires_python or None,
                "size": file.size,
                "upload-time": file.upload_time.isoformat() + "Z",
                "yanked": (file.release.yanked_reason
                           if file.release.yanked and file.release.yanked_reason
                           else file.release.yanked),
                "data-dist-info-metadata": False,
                "core-metadata": False,
            }
            for file in files
        ],
    }


def simple_index_context(request: Any, serial: int) -> dict:
    """Warehouse's ``_simple_index``: every project (the index is not a TUF target)."""
    projects = request.db.execute(
        select(Project.name, Project.normalized_name, Project.last_serial).order_by(Project.normalized_name)
    ).all()
    return {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "projects": [{"name": p.name, "_last-serial": p.last_serial} for p in projects],
    }
