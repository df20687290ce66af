"""Celery tasks: thin wrappers around the TUF manager.

They are registered on the host's Celery app (``registry["celery.app"]``),
whose task base passes the Pyramid request first, as Warehouse's
``WarehouseTask`` does.
"""

from __future__ import annotations

from warehouse_tuf.interfaces import ITUFService


def publish(request) -> None:
    """Publish everything pending (queued after each commit that recorded changes)."""
    request.find_service(ITUFService, context=None).publish()


def publish_pending(request) -> None:
    """Periodic safety net: a lost task message delays a change by one period at most."""
    request.find_service(ITUFService, context=None).publish()


def refresh(request) -> None:
    """Periodic: re-sign online roles before they expire."""
    request.find_service(ITUFService, context=None).refresh()


def gc(request) -> None:
    """Periodic: delete metadata versions outside the retention window."""
    request.find_service(ITUFService, context=None).gc()


TASKS = (publish, publish_pending, refresh, gc)
