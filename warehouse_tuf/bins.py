"""The one way bins are signed: bootstrap, publish, refresh, key rotation, backfill and workers.

The caller has reserved (and committed) the bins' new versions
(:func:`warehouse_tuf.db.reserve_bins`); :func:`sign` then signs each reserved
bin once, from the target table:

- with workers (a dispatch) and at least ``tuf.fan_out_batch`` bins, the
  batches go to the workers and this process signs them too, from the last
  batch backwards: a busy queue or a missing worker delays nothing, and a
  batch signed twice is signed under the same version;
- a few bins (one chunk) are signed here and handed back unstored: the caller
  stores them with the snapshot that lists them, one batch of fsyncs;
- otherwise they are signed here, one chunk at a time, each stored while the
  next is signed.

Whatever the path, a bin is written only while its reservation stands, checked
again right before the write, and its row is updated only if it still stands
then: a worker or a publisher that outlived its lock writes nothing a snapshot lists.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy.orm import Session
from tuf.api.metadata import Targets

from warehouse_tuf import canonical, db
from warehouse_tuf.db import BinEntries, BinReservation, SignedBin
from warehouse_tuf.exceptions import RepositoryError
from warehouse_tuf.repository import Repository
from warehouse_tuf.trust import Trusted

log = logging.getLogger("warehouse_tuf")


def sign(repo: Repository, trusted: Trusted, session: Session, indexes: Sequence[int],
         now: datetime.datetime, renew_before: datetime.datetime) -> list[SignedBin]:
    """Sign the reserved bins of ``indexes``; the ones left for the caller to store (see above).

    A bin keeps its expiry unless that comes before ``renew_before``: then it
    expires one bin expiry period after ``now``. ``session`` is the caller's,
    which holds the publish lock; the bins handed back are stored with the
    snapshot, after :func:`confirm_reserved`
    (:func:`warehouse_tuf.publishing.write_snapshot_and_timestamp`).
    """
    indexes = sorted(indexes)
    repo.progress.begin(len(indexes))
    size = repo.settings.fan_out_batch
    # Workers resolve the trust the database has installed: a rotation's new keys are signed here.
    if repo.dispatch is not None and trusted.installed and len(indexes) >= size:
        batches = [indexes[i:i + size] for i in range(0, len(indexes), size)]
        try:
            repo.dispatch(batches, now, renew_before)
        except Exception:  # a broker outage: this process signs them all
            log.warning("tuf: could not send the bin signing tasks; signing here", exc_info=True)
        for batch in reversed(batches):
            sign_reserved(repo, trusted, batch, now, renew_before)
        return []
    if len(indexes) <= db.CHUNK:
        signed = []
        for item in _signed(repo, trusted, session, db.open_reservations(session, indexes), now, renew_before):
            signed.append(item)
            repo.progress.advance(1)
        return signed
    sign_reserved(repo, trusted, indexes, now, renew_before)
    return []


def confirm_reserved(session: Session, signed: Sequence[SignedBin]) -> None:
    """Raise unless every bin of ``signed`` is still reserved under the version it was signed with."""
    standing = db.open_reservations(session, [item.index for item in signed])
    for item in signed:
        reservation = standing.get(item.index)
        if reservation is None or reservation.version != item.version:
            raise RepositoryError(
                f"another publisher reserved {item.name} while this one was signing version "
                f"{item.version} (its publish lock was lost): nothing more is written"
            )


def sign_reserved(repo: Repository, trusted: Trusted, indexes: Sequence[int],
                  now: datetime.datetime, renew_before: datetime.datetime) -> int:
    """Sign and store the reserved version of each bin of ``indexes`` not yet published.

    The workers' side of the fan-out, and this process's for many bins, in
    sessions of its own. Returns how many bins it recorded as signed.
    """
    signed = 0
    # One chunk's bytes are written (and fsynced, which releases the GIL) on a thread while the
    # next chunk is signed; its rows are updated only once they are durable.
    with repo.sessions() as signer_session, ThreadPoolExecutor(max_workers=1) as writer:
        reserved = db.open_reservations(signer_session, indexes)
        chunk: list[SignedBin] = []
        writing: tuple[Future[None], list[SignedBin]] | None = None

        def record_written() -> None:
            nonlocal signed, writing
            if writing is not None:
                stored, items = writing
                writing = None
                stored.result()  # the bytes are durable before the rows say so
                db.record_signed_bins(signer_session, items, now)
                signer_session.commit()
                signed += len(items)
                repo.progress.advance(len(items))

        def write() -> None:
            nonlocal chunk, writing
            standing = db.open_reservations(signer_session, [item.index for item in chunk])
            signer_session.commit()
            chunk = [item for item in chunk if standing.get(item.index) == reserved[item.index]]
            record_written()
            if chunk:
                files = {item.filename: item.data for item in chunk}
                writing = (writer.submit(repo.storage.put_many, files), chunk)
            chunk = []

        for item in _signed(repo, trusted, signer_session, reserved, now, renew_before):
            chunk.append(item)
            if len(chunk) >= db.CHUNK:
                write()
        if chunk:
            write()
        record_written()
    return signed


def _signed(repo: Repository, trusted: Trusted, session: Session, reserved: dict[int, BinReservation],
            now: datetime.datetime, renew_before: datetime.datetime) -> Iterator[SignedBin]:
    """Each reserved bin signed under its reserved version, from the target table."""
    renewed = now + repo.settings.expiry["bins"]
    for index, entries in db.bin_contents(session, sorted(reserved)):
        name, version, expires = reserved[index]
        if expires <= renew_before:
            expires = renewed
        yield SignedBin(index, name, version, expires, bin_bytes(trusted, version, expires, entries))


def bin_bytes(trusted: Trusted, version: int, expires: datetime.datetime, entries: BinEntries) -> bytes:
    """A signed bin, serialized: the dict form of ``Targets`` without one object per target."""
    signed = Targets(version=version, expires=expires).to_dict()
    signed["targets"] = entries  # validated paths, lengths and hex hashes, from the table
    return canonical.signed_document(signed, trusted.signers, checked=True)
