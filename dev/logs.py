"""The development host's log lines: one per request (the access log), one ``tuf kind=publish ...``
per publish, in ``serve`` and in its task process."""

from __future__ import annotations

import logging
import sys

#: Set once :func:`configure` ran in this process: the task process then configures its own.
_CONFIGURED: list[bool] = []


class _Quiet(logging.Filter):
    """Drops waitress's "Task queue depth is N" warnings: requests waiting for a free thread
    (a burst of uploads), not a fault; the access log shows every request anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Task queue depth")


def configure() -> None:
    """Log lines to standard error, unadorned."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name, level in (("wsgi", logging.INFO), ("warehouse_tuf", logging.INFO),
                        ("waitress", logging.WARNING), ("dev", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("waitress.queue").addFilter(_Quiet())
    _CONFIGURED.append(True)


def configured() -> bool:
    return bool(_CONFIGURED)
