"""Coalescing publish messages: at most one is in flight, whoever sends it.

Every commit that records changes needs a publisher to run after it, but one
publisher takes every change pending when it looks. So a message is sent only
when no publisher is requested or running, as the one row of
``tuf_publish_request`` says:

- the sender, *after* its commit, reads ``requested_at``; set and recent: it
  sends nothing; else it sets it and sends one message;
- the publisher, once it finds nothing pending, clears ``requested_at``
  *then* looks for pending changes once more.

Either the sender read the request before the publisher cleared it, and then
the publisher's last look comes after the sender's commit and sees its
changes; or the sender read it cleared, and sends. A request older than
``stale`` (a lost message, a worker that died) is taken as gone and sent again;
the periodic publish catches anything else, as it catches a lost message.
"""

from __future__ import annotations

import datetime
from typing import cast

from sqlalchemy import Table, or_, select, update
from sqlalchemy.engine import Engine

from warehouse_tuf.clock import utcnow
from warehouse_tuf.models import PublishRequest

_TABLE = cast(Table, PublishRequest.__table__)
_ROW = _TABLE.c.id == 1


def request(engine: Engine, stale: datetime.timedelta) -> bool:
    """Whether the caller, who just committed changes, must send a publish message.

    True marks the request as made: the caller sends the message (and
    :func:`withdraw` it if sending fails). Of two callers that find no
    request standing, only the one whose update takes the row sends.
    """
    now = utcnow()
    # Autocommit: one statement is one round trip, with no BEGIN or ROLLBACK around it.
    # This runs after every upload that recorded a change.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        requested_at = conn.execute(select(_TABLE.c.requested_at).where(_ROW)).scalar_one()
        if requested_at is not None and requested_at > now - stale:
            return False  # a publisher is queued or running: its last look sees this commit
        not_standing = or_(_TABLE.c.requested_at.is_(None), _TABLE.c.requested_at <= now - stale)
        taken = conn.execute(update(_TABLE).where(_ROW, not_standing).values(requested_at=now))
    return taken.rowcount == 1


def withdraw(engine: Engine) -> None:
    """No publisher is requested or running (one that found nothing pending, a message not sent)."""
    with engine.connect() as conn:
        if conn.execute(select(_TABLE.c.requested_at).where(_ROW)).scalar_one_or_none() is not None:
            conn.execute(update(_TABLE).where(_ROW).values(requested_at=None))
            conn.commit()
