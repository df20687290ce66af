"""The development host's web endpoints, on Warehouse's URLs.

Write endpoints (``/legacy/`` uploads, ``DELETE /manage/...``, ``POST
/manage/.../yank/``) take HTTP basic auth with the host's one account;
everything else is read-only. Like Warehouse's views, every change shown on
``/simple/<name>/`` writes a :class:`~dev.models.JournalEntry` (which moves
``projects.last_serial``), and an upload is stored in the archive storage, from
which the ``sync_file_to_cache`` task copies it to the files storage.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from typing import Any, BinaryIO

from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPException,
    HTTPForbidden,
    HTTPMovedPermanently,
    HTTPNotFound,
    HTTPOk,
    HTTPRequestEntityTooLarge,
)
from pyramid.response import FileIter, Response
from pyramid.view import view_config
from sqlalchemy import func, or_, select

from dev.models import File, JournalEntry, Project, Release, file_path, normalize_name
from dev.simple import HTML_TYPE, JSON_V1_TYPE, select_content_type, simple_detail_context, simple_index_context
from dev.tasks import sync_file_to_cache
from warehouse_tuf.interfaces import IMetadataStorage
from warehouse_tuf.models import MAX_TARGET_PATH_BYTES
from warehouse_tuf.targets import InvalidTargetError, validate_path

#: Largest accepted upload (PyPI's default limit).
MAX_UPLOAD_BYTES = 100 * 2**20
#: Room for the form fields around the file in a multipart upload.
MAX_FORM_OVERHEAD = 2**20
#: Longest URL path served: a target path with a route prefix and a hash prefix.
MAX_URL_PATH_BYTES = MAX_TARGET_PATH_BYTES + 128
_CHUNK_BYTES = 2**16
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
_FILETYPES = {"sdist": (".tar.gz", ".zip"), "bdist_wheel": (".whl",)}
_WRITE_METHODS = {"legacy.upload": "POST", "manage.project": "DELETE", "manage.release": "DELETE",
                  "manage.file": "DELETE", "manage.release.yank": "POST", "manage.release.unyank": "POST"}


def _error(exc_class: type[HTTPException], message: str) -> HTTPException:
    """An HTTP error whose status line carries the message, as Warehouse's uploads answer."""
    message = re.sub(r"[^\x20-\x7e]", "?", message)[:200]
    exc = exc_class(body=message + "\n", content_type="text/plain", charset="utf-8")
    exc.status = f"{exc_class.code} {message}"
    return exc


def _authenticated(request: Any) -> bool:
    return request.identity is not None  # dev.security: the host's account, by basic auth


def _require_auth(request: Any) -> None:
    if not _authenticated(request):
        raise _error(HTTPForbidden, "Invalid or non-existent authentication information.")


# -- uploads and deletions ---------------------------------------------------------


@view_config(route_name="legacy.upload", request_method="POST")
def file_upload(request: Any) -> Response:
    """The legacy upload API, as ``twine upload`` speaks it."""
    _require_auth(request)
    if (request.content_length or 0) > MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD:
        # Refused before the body is read: request.POST would read and parse all of it.
        raise _error(HTTPRequestEntityTooLarge,
                     f"Upload of {request.content_length} bytes; the limit is {MAX_UPLOAD_BYTES} bytes.")
    form = request.POST
    if form.get(":action") != "file_upload":
        raise _error(HTTPBadRequest, "Unsupported ':action', only 'file_upload' is accepted.")
    name, version = form.get("name", "").strip(), form.get("version", "").strip()
    filetype = form.get("filetype", "")
    if not _PROJECT_NAME.match(name):
        raise _error(HTTPBadRequest, f"Invalid project name {name[:80]!r}.")
    if not _VERSION.match(version):
        raise _error(HTTPBadRequest, f"Invalid version {version[:80]!r}.")
    if filetype not in _FILETYPES:
        raise _error(HTTPBadRequest, f"Unsupported filetype {filetype[:40]!r}; use sdist or bdist_wheel.")
    upload = form.get("content")
    if not hasattr(upload, "file"):
        raise _error(HTTPBadRequest, "Upload without a file ('content').")
    filename = upload.filename or ""
    try:
        validate_path(filename)
    except InvalidTargetError as exc:
        raise _error(HTTPBadRequest, f"Invalid filename: {exc}.") from None
    normalized = normalize_name(name)
    if not filename.endswith(_FILETYPES[filetype]) or not normalize_name(filename).startswith(normalized + "-"):
        raise _error(HTTPBadRequest, f"Invalid filename {filename[:80]!r} for {filetype} of {name!r}.")
    received = tempfile.NamedTemporaryFile(prefix="upload-")
    request.add_finished_callback(lambda request: received.close())
    digests = _receive(upload.file, received)
    for field, digest in digests.items():
        given = form.get(field, "").strip().lower()
        if given and given != digest:
            raise _error(HTTPBadRequest, f"The {field} given does not match the uploaded file.")

    existing = request.db.scalars(select(File).where(
        or_(File.filename == filename, File.sha256_digest == digests["sha256_digest"])
    )).first()
    if existing is not None:
        if (existing.filename, existing.sha256_digest) == (filename, digests["sha256_digest"]):
            return HTTPOk(body="File already exists, identical.\n")  # twine --skip-existing
        raise _error(HTTPBadRequest, f"File already exists ({existing.filename!r}) with other contents "
                                     "or under another name.")

    project = request.db.scalars(
        select(Project).where(Project.normalized_name == func.normalize_pep426_name(name))
    ).first()
    release = None
    if project is None:
        # normalized_name is the database's (trigger): None until this flush.
        project = Project(name=name)
        request.db.add(project)
        request.db.flush()
        _journal(request, project, action="create")
    else:
        release = request.db.scalars(
            select(Release).where(Release.project == project, Release.version == version)
        ).first()
    if release is None:
        release = Release(project=project, version=version,
                          requires_python=form.get("requires_python", "").strip() or None)
        request.db.add(release)
        _journal(request, project, version, "new release")
    file = File(
        release=release, filename=filename, path=file_path(digests["blake2_256_digest"], filename),
        size=received.tell(), packagetype=filetype, python_version=form.get("pyversion", "source"),
        **digests,
    )
    request.db.add(file)
    _journal(request, project, version, f"add {file.python_version} file {file.filename}")
    request.db.flush()  # the rows, and the extension's pending changes, exist before the bytes
    # Stored inside the transaction, as Warehouse does: a storage failure rolls the upload back.
    request.registry["dev.archive"].store(file.path, received.name)
    # As Warehouse: a task copies it to the files storage (sent after commit).
    request.task(sync_file_to_cache).delay(file.id)
    return HTTPOk(body="OK\n")


def _receive(source: BinaryIO, received: BinaryIO) -> dict[str, str]:
    """Copy an upload to ``received`` in chunks, as Warehouse does; its digests, by field name."""
    hashers = {"md5_digest": hashlib.md5(), "sha256_digest": hashlib.sha256(),
               "blake2_256_digest": hashlib.blake2b(digest_size=32)}
    size = 0
    for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise _error(HTTPBadRequest, f"File too large; the limit is {MAX_UPLOAD_BYTES} bytes.")
        received.write(chunk)
        for hasher in hashers.values():
            hasher.update(chunk)
    received.flush()
    return {field: hasher.hexdigest() for field, hasher in hashers.items()}


def _journal(request: Any, project: Project, version: str | None = None, action: str = "") -> None:
    """A journal entry for a change of ``project``, as Warehouse's views write them."""
    request.db.add(JournalEntry(name=project.name, version=version, action=action))


def _one_or_404(request: Any, statement: Any, message: str) -> Any:
    found = request.db.scalars(statement).first()
    if found is None:
        raise _error(HTTPNotFound, message)
    return found


def _project(request: Any) -> Project:
    name = request.matchdict["name"]
    statement = select(Project).where(Project.normalized_name == func.normalize_pep426_name(name))
    return _one_or_404(request, statement, f"No project {name[:80]!r}.")


def _release(request: Any) -> Release:
    project = _project(request)
    version = request.matchdict["version"]
    statement = select(Release).where(Release.project == project, Release.version == version)
    return _one_or_404(request, statement, f"No release {version[:80]!r} of {project.name!r}.")


@view_config(route_name="manage.project", request_method="DELETE")
def delete_project(request: Any) -> Response:
    _require_auth(request)
    project = _project(request)
    _journal(request, project, action="remove project")
    request.db.delete(project)  # releases and files go by database cascade
    request.db.flush()
    return HTTPOk(body=f"deleted project {project.name}\n")


@view_config(route_name="manage.release", request_method="DELETE")
def delete_release(request: Any) -> Response:
    _require_auth(request)
    release = _release(request)
    _journal(request, release.project, release.version, "remove release")
    request.db.delete(release)
    request.db.flush()
    return HTTPOk(body=f"deleted release {release.version}\n")


@view_config(route_name="manage.file", request_method="DELETE")
def delete_file(request: Any) -> Response:
    _require_auth(request)
    release = _release(request)
    filename = request.matchdict["filename"]
    statement = select(File).where(File.release == release, File.filename == filename)
    file = _one_or_404(request, statement, f"No file {filename[:80]!r} in release {release.version!r}.")
    _journal(request, release.project, release.version, f"remove file {file.filename}")
    request.db.delete(file)
    request.db.flush()
    return HTTPOk(body=f"deleted file {file.filename}\n")


@view_config(route_name="manage.release.yank", request_method="POST")
def yank_release(request: Any) -> Response:
    """Yank a release (form field ``yanked_reason``, optional), as Warehouse's manage view."""
    _require_auth(request)
    release = _release(request)
    release.yanked = True
    release.yanked_reason = request.POST.get("yanked_reason", "").strip()[:1000]
    _journal(request, release.project, release.version, "yank release")
    request.db.flush()
    return HTTPOk(body=f"yanked release {release.version}\n")


@view_config(route_name="manage.release.unyank", request_method="POST")
def unyank_release(request: Any) -> Response:
    _require_auth(request)
    release = _release(request)
    release.yanked = False
    release.yanked_reason = ""
    _journal(request, release.project, release.version, "unyank release")
    request.db.flush()
    return HTTPOk(body=f"unyanked release {release.version}\n")


@view_config(route_name="legacy.upload")
@view_config(route_name="manage.project")
@view_config(route_name="manage.release")
@view_config(route_name="manage.file")
@view_config(route_name="manage.release.yank")
@view_config(route_name="manage.release.unyank")
def wrong_method(request: Any) -> Response:
    """Write endpoints answer 403 to the unauthenticated and 405 to other methods."""
    _require_auth(request)
    return Response(status=405, headers={"Allow": _WRITE_METHODS[request.matched_route.name]})


# -- read-only: simple pages, distributions, TUF metadata ------------------------------


def _negotiate(request: Any) -> None:
    """Select the renderer by ``Accept``, as ``warehouse.api.simple`` does."""
    request.response.content_type = select_content_type(request)
    if request.response.content_type == JSON_V1_TYPE:
        request.override_renderer = "json"
    request.response.vary = ("Accept",)


@view_config(route_name="simple.index", request_method=("GET", "HEAD"), renderer="api/simple/index.html")
def simple_index(request: Any) -> dict:
    _negotiate(request)
    serial = request.db.scalar(select(func.max(JournalEntry.id))) or 0
    request.response.headers["X-PyPI-Last-Serial"] = str(serial)
    return simple_index_context(request, serial)


@view_config(route_name="simple.detail", request_method=("GET", "HEAD"), renderer="api/simple/detail.html")
def simple_detail(request: Any) -> Any:
    """The project's page, rendered now from the database: what the extension signs.

    The extension renders it through a subrequest without tweens: an unknown
    project raises 404 (as Warehouse's, whose route factory finds no project).
    """
    name = request.matchdict["name"]
    project = request.db.scalars(
        select(Project).where(Project.normalized_name == func.normalize_pep426_name(name))
    ).first()
    if project is None:
        raise _error(HTTPNotFound, f"No project {name[:80]!r}.")
    if project.normalized_name != name:
        return HTTPMovedPermanently(location=request.route_path("simple.detail", name=project.normalized_name))
    _negotiate(request)
    request.response.headers["X-PyPI-Last-Serial"] = str(project.last_serial)
    return simple_detail_context(project, request)


def _stored(request: Any, storage: Any, name: str, content_type: str) -> Response:
    try:
        data = storage.get(name)
    except OSError:  # absent, or a name the storage refuses
        raise HTTPNotFound() from None
    return Response(body=data, content_type=content_type, charset=None)


@view_config(route_name="simple.stored", request_method=("GET", "HEAD"))
def simple_stored(request: Any) -> Response:
    """A hash-prefixed page copy (``<name>/<hash>.<name>.html``), as TUF clients fetch it."""
    name, filename = request.matchdict["name"], request.matchdict["filename"]
    content_type = JSON_V1_TYPE if filename.endswith(".json") else HTML_TYPE
    storage = request.find_service(IMetadataStorage, name="tuf.simple")
    return _stored(request, storage, f"{name}/{filename}", content_type)


@view_config(route_name="packages", request_method=("GET", "HEAD"))
def packages(request: Any) -> Response:
    """A distribution from the files storage, streamed."""
    try:
        stored = request.registry["dev.files"].get("/".join(request.matchdict["path"]))
    except OSError:  # absent, or a name the path rule refuses
        raise HTTPNotFound() from None
    size = os.fstat(stored.fileno()).st_size
    return Response(app_iter=FileIter(stored), content_length=size, content_type="application/octet-stream")


@view_config(route_name="tuf.metadata", request_method=("GET", "HEAD"))
def tuf_metadata(request: Any) -> Response:
    name = "/".join(request.matchdict["path"])
    storage = request.find_service(IMetadataStorage, name="tuf.metadata")
    return _stored(request, storage, name, "application/json")


@view_config(context=URLDecodeError)
def undecodable_url(exc: URLDecodeError, request: Any) -> Response:
    """A URL whose path is not UTF-8: the client's error, not the server's."""
    return _error(HTTPBadRequest, "The URL path is not valid UTF-8.")


def _refuse_long_paths(handler: Any, registry: Any) -> Any:
    """A tween that refuses a URL path longer than any this host serves, before routing."""
    def tween(request: Any) -> Response:
        length = len(request.environ.get("PATH_INFO", ""))  # WSGI: one character per byte
        if length > MAX_URL_PATH_BYTES:
            return _error(HTTPBadRequest, f"The URL path is {length} bytes; the limit is {MAX_URL_PATH_BYTES}.")
        return handler(request)
    return tween


def includeme(config: Any) -> None:
    config.add_tween("dev.views._refuse_long_paths")
    config.add_route("legacy.upload", "/legacy/")
    config.add_route("manage.project", "/manage/project/{name}/")
    config.add_route("manage.release", "/manage/project/{name}/release/{version}/")
    config.add_route("manage.file", "/manage/project/{name}/release/{version}/file/{filename}")
    config.add_route("manage.release.yank", "/manage/project/{name}/release/{version}/yank/")
    config.add_route("manage.release.unyank", "/manage/project/{name}/release/{version}/unyank/")
    config.add_route("simple.index", "/simple/")
    config.add_route("simple.detail", "/simple/{name}/")
    config.add_route("simple.stored", "/simple/{name}/{filename}")
    config.add_route("packages", "/packages/*path")
    config.add_route("tuf.metadata", "/tuf/metadata/*path")
    config.scan("dev.views")
