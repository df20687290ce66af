"""``serve_warehouse.py`` that also times the extension's own work in each request (benchmark only).

    WAREHOUSE_TUF_LISTENER_TIMES=FILE python serve_warehouse_timed.py PORT [THREADS]

Before Warehouse's ``configure()`` runs (it includes ``warehouse_tuf``, whose
``includeme`` looks the listeners up in ``warehouse_tuf.listeners`` when it registers
them on Warehouse's session class), each session listener of the extension --
``record_removals`` (before_flush), ``record_additions`` (after_flush),
``record_bulk_deletes`` (do_orm_execute), ``queue_publish`` (after_commit),
``forget_pending`` (after_rollback) -- is replaced by the same function under a
timer. Time is summed per thread (waitress runs a request in one thread); a
listener running inside another (a query of ``record_bulk_deletes`` fires
do_orm_execute again) is counted once, in the outer one.

A WSGI wrapper around Warehouse's app resets the thread's sum when a request
starts and, once the app has returned (view, commit and its after_commit
listeners, finished callbacks: everything before the response is written),
appends one JSON line per ``POST /legacy/`` (an upload) to FILE::

    {"ms": 1.234, "listeners": {"record_additions": [calls, ms], ...}}

Neither Warehouse nor the extension is changed.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time

from warehouse_tuf import listeners

LISTENERS = ("record_removals", "record_additions", "record_bulk_deletes", "queue_publish",
             "forget_pending")

_state = threading.local()


def _sums() -> dict[str, list]:
    sums = getattr(_state, "sums", None)
    if sums is None:
        sums = _state.sums = {}
        _state.depth = 0
    return sums


def timed(name: str, listener):
    @functools.wraps(listener)
    def wrapper(*args, **kwargs):
        sums = _sums()
        _state.depth += 1
        started = time.perf_counter()
        try:
            return listener(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            _state.depth -= 1
            entry = sums.setdefault(name, [0, 0.0])
            entry[0] += 1
            if _state.depth == 0:  # nested calls are inside the outer call's time
                entry[1] += elapsed

    return wrapper


def install_timers() -> None:
    for name in LISTENERS:
        setattr(listeners, name, timed(name, getattr(listeners, name)))


class PerUpload:
    """WSGI wrapper: the extension's time in each ``POST /legacy/``, one JSON line in ``path``."""

    def __init__(self, app, path: str) -> None:
        self.app, self.path, self.lock = app, path, threading.Lock()

    def __call__(self, environ, start_response):
        _sums().clear()
        _state.depth = 0
        try:
            return self.app(environ, start_response)
        finally:
            if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/legacy/":
                sums = _sums()
                line = json.dumps({
                    "ms": round(sum(ms for _, ms in sums.values()) * 1000, 4),
                    "listeners": {name: [calls, round(ms * 1000, 4)]
                                  for name, (calls, ms) in sorted(sums.items())},
                })
                with self.lock, open(self.path, "a") as out:
                    out.write(line + "\n")


def main() -> None:
    install_timers()  # before configure(): includeme registers what the module names then
    from serve_warehouse import make_app, serve

    serve(PerUpload(make_app(), os.environ["WAREHOUSE_TUF_LISTENER_TIMES"]), sys.argv)


if __name__ == "__main__":
    main()
