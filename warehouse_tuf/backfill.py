"""Backfill: sign every file and simple page the host had before TUF was enabled (resumable)."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Select, func, select

from warehouse_tuf import db, trust
from warehouse_tuf import targets as targetlib
from warehouse_tuf.db import TargetRow
from warehouse_tuf.exceptions import RepositoryError
from warehouse_tuf.locking import publish_lock
from warehouse_tuf.models import Target, TargetKind
from warehouse_tuf.publishing import put_page_targets, render_pages, resign_bins
from warehouse_tuf.repository import ProgressCallback, Repository
from warehouse_tuf.results import BackfillResult

log = logging.getLogger("warehouse_tuf")


def backfill(repo: Repository, *, batch_files: int = 10_000, batch_bins: int = 4096,
             progress: ProgressCallback | None = None) -> BackfillResult:
    """Sign every file and simple page the host already has.

    Three resumable stages, each run again from where it stopped:
    ``files`` adds the host's files that have no target yet, ``pages``
    renders the projects that have no page targets yet, each batch
    committed with a re-sign mark on the bins it touched; ``bins``
    re-signs the marked bins ``batch_bins`` at a time, each batch a
    complete publish (fanned out when there is a dispatch), so uploads
    keep publishing in between. ``progress(stage, done, total)`` is
    called after every batch.
    """
    if repo.models is None:
        raise RepositoryError("backfill needs the host's models (tuf.models.*)")
    models = repo.models
    started = time.monotonic()
    report = progress or (lambda stage, done, total: None)
    result = BackfillResult()
    with repo.sessions() as reader:
        trust.trusted(repo, reader)  # bootstrapped, and the signers sign
        files_total = reader.scalar(select(func.count()).select_from(_missing_files(models).subquery())) or 0
        pages_total = (reader.scalar(select(func.count()).select_from(_missing_pages(models).subquery())) or 0
                       if repo.renderer is not None else 0)
    layout = trust.bin_layout(repo)
    after = ""
    while True:
        with publish_lock(repo.engine, repo.settings.lock_timeout), repo.sessions() as writer:
            page = writer.execute(_missing_files(models, after).limit(batch_files)).all()
            if not page:
                break
            rows = []
            for file in page:
                try:
                    rows.append(_file_target(file, layout, repo.settings.hash_algorithms))
                except targetlib.InvalidTargetError as exc:
                    result.skipped.append(str(exc))
            db.upsert_targets(writer, rows)
            db.mark_bins(writer, {row["bin_index"] for row in rows})
            writer.commit()
        after = page[-1].path
        result.files += len(rows)
        report("files", result.files + len(result.skipped), files_total)
    result.stages["files"] = time.monotonic() - started
    after = ""
    while repo.renderer is not None:
        with publish_lock(repo.engine, repo.settings.lock_timeout), repo.sessions() as writer:
            names = writer.scalars(_missing_pages(models, after).limit(db.CHUNK)).all()
            if not names:
                break
            put_page_targets(writer, render_pages(repo, names))
            if repo.request is not None:
                # The renderer loads each project into the request's session: let them go.
                repo.request.db.expunge_all()
            db.mark_bins(writer, {layout.index(path) for name in names
                                  for path in targetlib.page_paths(name).values()})
            writer.commit()
        after = names[-1]
        result.pages += len(names)
        report("pages", result.pages, pages_total)
    result.stages["pages"] = time.monotonic() - started - result.stages["files"]
    with repo.sessions() as reader:
        marked = db.unfinished_bins(reader)
    for start in range(0, len(marked), batch_bins):
        batch = marked[start:start + batch_bins]
        resign_bins(repo, batch)
        result.bins += len(batch)
        report("bins", result.bins, len(marked))
    result.seconds = time.monotonic() - started
    result.stages["bins"] = result.seconds - result.stages["files"] - result.stages["pages"]
    log.info("tuf backfill: %d files, %d pages, %d bins, %d skipped, %.1fs",
             result.files, result.pages, result.bins, len(result.skipped), result.seconds)
    return result


def _missing_files(models: tuple[Any, Any, Any], after: str = "") -> Select[Any]:
    """The host's files without a target, in path order from ``after``."""
    Project, Release, File = models
    return (
        select(File.path, File.size, File.sha256_digest, File.blake2_256_digest,
               Project.normalized_name, Release.version)
        .join(File.release).join(Release.project)
        .outerjoin(Target, Target.path == File.path)
        .where(Target.path.is_(None), File.path > after)
        .order_by(File.path)
    )


def _missing_pages(models: tuple[Any, Any, Any], after: str = "") -> Select[Any]:
    """The host's projects without page targets, in name order from ``after``."""
    name = models[0].normalized_name
    return (
        select(name).outerjoin(Target, Target.path == name + "/" + name + ".html")
        .where(Target.path.is_(None), name > after).order_by(name)
    )


def _file_target(file: Any, layout: targetlib.BinLayout, algorithms: tuple[str, ...]) -> TargetRow:
    path = targetlib.validate_path(file.path)
    return {
        "path": path, "bin_index": layout.index(path),
        "length": targetlib.validate_length(path, file.size),
        "hashes": targetlib.validate_hashes(path, targetlib.file_hashes(file), algorithms),
        "kind": TargetKind.FILE.value, "project": file.normalized_name, "release": file.version,
    }
