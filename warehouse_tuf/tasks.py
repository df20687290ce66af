"""Celery tasks: thin wrappers around the TUF manager.

They are registered on the host's Celery app (``registry["celery.app"]``),
whose task base passes the Pyramid request first, as Warehouse's
``WarehouseTask`` does.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from warehouse_tuf import publish_requests
from warehouse_tuf.interfaces import ITUFService

log = logging.getLogger(__name__)

#: Seconds the publish task keeps looking for new changes after its last run: changes
#: committed meanwhile are published without a message of their own (``publish_requests.py``).
PUBLISH_LINGER = 0.5
#: Seconds after which the publish task starts no new run: it queues its successor instead,
#: so that no task runs for ever under a steady stream of uploads.
PUBLISH_TASK_SECONDS = 2.0


def publish(request: Any) -> None:
    """Publish everything pending (queued after a commit that recorded changes, when no
    publisher was requested or running).

    Skipped when a publish is running: that one publishes this change too.
    """
    service = request.find_service(ITUFService, context=None)
    result = service.publish(wait=False, linger=PUBLISH_LINGER, deadline=time.monotonic() + PUBLISH_TASK_SECONDS)
    if result.pending_left:
        try:
            request.task(publish).delay()  # the request still stands: this message is it
        except Exception:
            log.exception("tuf: could not queue the next publish task; the periodic publish will catch up")
            publish_requests.withdraw(service.engine)  # the next commit sends one


def publish_pending(request: Any) -> None:
    """Periodic safety net: a lost task message delays a change by one period at most."""
    request.find_service(ITUFService, context=None).publish()


def refresh(request: Any) -> None:
    """Periodic: re-sign online roles before they expire."""
    request.find_service(ITUFService, context=None).refresh()


def gc(request: Any) -> None:
    """Periodic: delete metadata versions outside the retention window."""
    request.find_service(ITUFService, context=None).gc()


def sign_bins(request: Any, indexes: list[int], now: str, renew_before: str) -> None:
    """Fan-out worker: sign the reserved versions of these bins (``TUFManager.sign_reserved_bins``)."""
    service = request.find_service(ITUFService, context=None)
    service.sign_reserved_bins(indexes, datetime.datetime.fromisoformat(now),
                               datetime.datetime.fromisoformat(renew_before))


def bin_dispatch(
    celery_app: Any,
) -> Callable[[list[list[int]], datetime.datetime, datetime.datetime], None] | None:
    """A ``Dispatch`` that sends one :func:`sign_bins` task per batch, or None when tasks run eagerly.

    Eager (embedded) tasks would run one after the other in this very
    process, so there the bins are signed in process instead. The messages
    go out at once, not after the caller's transaction: the coordinator
    waits for them while it holds the publish lock.
    """
    if celery_app.conf.task_always_eager:
        return None
    name = f"{sign_bins.__module__}.{sign_bins.__name__}"

    def dispatch(batches: list[list[int]], now: datetime.datetime, renew_before: datetime.datetime) -> None:
        for batch in batches:
            celery_app.send_task(name, args=(batch, now.isoformat(), renew_before.isoformat()))

    return dispatch


TASKS = (publish, publish_pending, refresh, gc, sign_bins)
