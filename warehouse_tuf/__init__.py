"""warehouse-tuf: PEP 458 signed TUF metadata for Warehouse, as a Pyramid extension.

Enable it with ``config.include("warehouse_tuf")``. From then on the session
listeners (``listeners.py``) turn every upload and deletion into a pending target change,
in the same transaction, and queue the publish task after commit.
"""

from __future__ import annotations

import functools
from typing import Any

# Everything else is imported where it is used: ``warehouse-tuf --help`` and a
# host's command line that only imports this package stay fast (the ceremony's
# key holders need neither SQLAlchemy nor Pyramid loaded to read a help text).


def includeme(config: Any) -> None:
    from sqlalchemy import event

    from warehouse_tuf import listeners, tasks
    from warehouse_tuf.interfaces import IMetadataStorage, ITUFService
    from warehouse_tuf.services import TUFManager
    from warehouse_tuf.settings import TUFSettings

    settings = TUFSettings.from_settings(config.get_settings())
    registry = config.registry
    registry["tuf.settings"] = settings
    registry["tuf.storage"] = config.maybe_dotted(settings.storage_backend).from_location(
        settings.storage_path
    )
    registry["tuf.simple_storage"] = config.maybe_dotted(settings.simple_backend).from_location(
        settings.simple_path
    )
    registry["tuf.renderer"] = (
        config.maybe_dotted(settings.simple_renderer) if settings.simple_renderer else None
    )
    registry["tuf.models"] = tuple(
        config.maybe_dotted(settings.models[name]) for name in ("project", "release", "file")
    )
    registry["tuf.journal_model"] = config.maybe_dotted(settings.models["journal"])
    config.register_service(registry["tuf.storage"], IMetadataStorage, name="tuf.metadata")
    config.register_service(registry["tuf.simple_storage"], IMetadataStorage, name="tuf.simple")
    config.register_service_factory(TUFManager.create_service, ITUFService)

    celery_app = registry["celery.app"]
    registered = {
        task: celery_app.task(ignore_result=True, acks_late=True, name=f"{task.__module__}.{task.__name__}")(task)
        for task in tasks.TASKS
    }
    registry["tuf.dispatch"] = tasks.bin_dispatch(celery_app)
    # Found once (a proxy until the app is finalized), not per commit.
    registry["tuf.publish_task"] = registered[tasks.publish]
    config.include("warehouse_tuf.admin")  # /admin/tuf/, for the host's admins

    if settings.enabled:
        session_class = config.maybe_dotted(settings.session_class)
        hooks = (
            ("before_flush", listeners.record_removals),
            ("after_flush", listeners.record_additions),
            ("do_orm_execute", listeners.record_bulk_deletes),
            ("after_commit", listeners.queue_publish),
            ("after_rollback", listeners.forget_pending),
            ("after_transaction_end", listeners.forget_marked_pages),
        )
        for name, listener in hooks:
            event.listen(session_class, name, functools.partial(listener, config))

        from celery.schedules import crontab

        config.add_periodic_task(settings.publish_interval, tasks.publish_pending)
        config.add_periodic_task(settings.refresh_interval, tasks.refresh)
        config.add_periodic_task(crontab(minute=30, hour=3), tasks.gc)
