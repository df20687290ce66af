"""Celery for the development host, set up the way Warehouse sets it up.

- ``registry["celery.app"]`` is the Celery app; its task base
  (:class:`WarehouseTask`) passes a Pyramid request first and runs the task in
  that request's transaction.
- A task queued while a transaction is open is sent only after it commits.
- ``config.task(fn)``, ``request.task(fn)`` and
  ``config.add_periodic_task(schedule, fn)`` find or schedule tasks.

Embedded mode has no broker: tasks run eagerly, one at a time, outside the
upload request (:attr:`celery.Celery.embedded_executor`), on a background
thread of the host process (``dev.embedded_tasks = thread``) or in one child
process of its own (``process``, what ``serve`` runs): there a publish never
holds the interpreter lock the request threads need. :class:`EmbeddedBeat`
stands in for beat.
Distributed mode sends to Redis, for ``python -m dev worker`` and ``beat``.

The host's own task, :func:`sync_file_to_cache`, copies an upload from the
archive storage to the files storage, as Warehouse's
``warehouse.packaging.tasks.sync_file_to_cache`` does.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import celery
import transaction
from celery.schedules import maybe_schedule
from kombu import Queue
from pyramid import scripting
from pyramid.threadlocal import get_current_request

log = logging.getLogger("dev.tasks")


class WarehouseTask(celery.Task):
    """Runs with a Pyramid request first, inside ``request.tm``; sends after commit."""

    def __new__(cls, *args: Any, **kwargs: Any) -> WarehouseTask:
        task = super().__new__(cls, *args, **kwargs)
        header = getattr(task, "__header__", None)
        if header is not None:
            # Celery checks call arguments against the function's signature; the
            # request is not a caller's argument, it is passed when the task runs.
            task.__header__ = functools.partial(header, None)
        return task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        env = scripting.prepare(registry=self.app.pyramid_config.registry)
        request = env["request"]
        request.tm = transaction.TransactionManager(explicit=True)
        try:
            with request.tm:
                return super().__call__(request, *args, **kwargs)
        finally:
            env["closer"]()

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        request = get_current_request()
        if request is None or not hasattr(request, "tm"):
            return self._send(args, kwargs, options)
        try:
            current = request.tm.get()
        except transaction.interfaces.NoTransaction:
            return self._send(args, kwargs, options)
        current.addAfterCommitHook(self._after_commit_hook, args=(args, kwargs, options))
        return None

    def _after_commit_hook(self, success: bool, args: Any, kwargs: Any, options: dict) -> None:
        if success:
            self._send(args, kwargs, options)

    def _send(self, args: Any, kwargs: Any, options: dict) -> Any:
        if not hasattr(self.app, "embedded_pending"):  # distributed: to the broker
            return super().apply_async(args, kwargs, **options)
        if self.app.embedded_tasks == "process":
            future = _submit_to_task_process(self.app, self.name, args, kwargs, options)
        else:
            future = self.app.embedded_executor.submit(super().apply_async, args, kwargs, **options)
        self.app.embedded_pending.add(future)
        future.add_done_callback(self.app.embedded_pending.discard)
        return future


def wait_for_embedded_tasks(app: celery.Celery, timeout: float = 120) -> None:
    """Return once every task queued in embedded mode has run, including the tasks those
    tasks queued (a publish past its deadline queues its successor)."""
    deadline = time.monotonic() + timeout
    while queued := app.embedded_pending.copy():  # copy: other threads add and discard
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(queued)} embedded task(s) still queued after {timeout}s")
        concurrent.futures.wait(queued, timeout=left)


#: In the task process (``dev.embedded_tasks = process``): its own Celery app, set by its initializer.
_TASK_PROCESS: dict[str, celery.Celery] = {}
_TASK_PROCESS_LOCK = threading.Lock()


def _submit_to_task_process(app: celery.Celery, name: str, args: Any, kwargs: Any,
                            options: dict) -> concurrent.futures.Future:
    """Run the task ``name`` in the task process, started at the first task (no process for a
    command that queues none); a task process that died (killed, out of memory) is replaced."""
    executor = _task_process_executor(app)
    try:
        future = executor.submit(_run_in_task_process, name, args, kwargs, options)
    except concurrent.futures.BrokenExecutor:
        _forget_task_process(app, executor)
        return _submit_to_task_process(app, name, args, kwargs, options)
    future.add_done_callback(functools.partial(_lost_with_its_process, app, executor))
    return future


def _task_process_executor(app: celery.Celery) -> concurrent.futures.ProcessPoolExecutor:
    """The task process's executor, created on first use (or after the last one died)."""
    with _TASK_PROCESS_LOCK:
        if app.embedded_executor is None:
            app.embedded_executor = _task_process(app.pyramid_config.registry.settings)
        return app.embedded_executor


def _task_process(settings: Any) -> concurrent.futures.ProcessPoolExecutor:
    """One spawned child process that configures its own host from ``settings`` and runs the tasks."""
    from dev import logs

    given = {key: value for key, value in settings.items() if isinstance(value, (str, int, float, bool))}
    given.update({"warehouse.env": settings["warehouse.env"].value, "dev.embedded_tasks": "thread"})
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_task_process, initargs=(given, logs.configured()),
    )


def _forget_task_process(app: celery.Celery, dead: concurrent.futures.ProcessPoolExecutor) -> None:
    with _TASK_PROCESS_LOCK:
        if app.embedded_executor is dead:
            log.warning("dev: the embedded task process died; the next task starts a new one")
            app.embedded_executor = None


def _lost_with_its_process(app: celery.Celery, executor: concurrent.futures.ProcessPoolExecutor,
                           future: concurrent.futures.Future) -> None:
    if not future.cancelled() and isinstance(future.exception(), concurrent.futures.BrokenExecutor):
        # Its change stays pending: the next commit's task or the periodic publish takes it.
        _forget_task_process(app, executor)


def _start_task_process(settings: dict[str, Any], log_lines: bool) -> None:
    from dev import logs
    from dev.app import configure

    if log_lines:  # the host prints its log lines (``serve``): so does its task process
        logs.configure()
    _TASK_PROCESS["app"] = configure(settings).registry["celery.app"]
    threading.Thread(target=_exit_with_the_host, name="dev-task-process-watch", daemon=True).start()


def _exit_with_the_host() -> None:
    """A task process outlives no host: the executor's queues would keep it waiting for ever.
    A publish cut short here is a crash the next one finishes, as when the host is killed."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _run_in_task_process(name: str, args: Any, kwargs: Any, options: dict) -> None:
    """Run the task ``name`` here, then the tasks it queued (a publish past its deadline queues
    its successor): the parent's future is done only when they all are."""
    app = _TASK_PROCESS["app"]
    app.tasks[name].apply_async(args, kwargs, **options)
    wait_for_embedded_tasks(app, timeout=3600)


def start_embedded_tasks(app: celery.Celery) -> None:
    """Start the task process now, not at the first upload's task (it takes a second to configure
    its host): ``serve`` does at start-up. Nothing to do in thread mode."""
    if getattr(app, "embedded_tasks", None) == "process":
        _task_process_executor(app).submit(int).result(timeout=120)  # runs once the process is configured


def stop_embedded_tasks(app: celery.Celery) -> None:
    """Wait for the tasks queued, then let the task process go. A host that is itself a
    multiprocessing child (a bench's uploader) must: its exit waits for its children before
    the executor's own exit hook would tell the task process to stop."""
    wait_for_embedded_tasks(app, timeout=600)
    if app.embedded_executor is not None:
        app.embedded_executor.shutdown()


class EmbeddedBeat(threading.Thread):
    """Embedded mode's beat: runs each periodic task when its schedule is due."""

    def __init__(self, app: celery.Celery, tick: float = 5.0) -> None:
        super().__init__(name="dev-embedded-beat", daemon=True)
        self.app = app
        self.tick = tick
        self.stopped = threading.Event()

    def run(self) -> None:
        entries = self.app.conf.beat_schedule
        schedules = {name: maybe_schedule(entry["schedule"]) for name, entry in entries.items()}
        started = datetime.datetime.now(datetime.UTC)
        last_run = dict.fromkeys(entries, started)
        while not self.stopped.wait(self.tick):
            for name, entry in entries.items():
                if schedules[name].is_due(last_run[name]).is_due:
                    last_run[name] = datetime.datetime.now(datetime.UTC)
                    self.app.tasks[entry["task"]].apply_async(
                        entry.get("args"), entry.get("kwargs"), **entry.get("options", {})
                    )


def _get_task(celery_app: celery.Celery, task_func: Any) -> celery.Task:
    return celery_app.tasks[celery_app.gen_task_name(task_func.__name__, task_func.__module__)]


def _get_task_from_request(request: Any) -> Any:
    celery_app = request.registry["celery.app"]
    return lambda task_func: _get_task(celery_app, task_func)


def _get_task_from_config(config: Any, task_func: Any) -> celery.Task:
    return _get_task(config.registry["celery.app"], task_func)


def _add_periodic_task(config: Any, schedule: Any, func: Any, args: Any = (), kwargs: Any = (),
                       name: str | None = None, **opts: Any) -> None:
    def add_task() -> None:
        config.registry["celery.app"].add_periodic_task(
            schedule, config.task(func).s(), args=args, kwargs=kwargs, name=name, **opts
        )

    config.action(None, add_task, order=100)


def sync_file_to_cache(request: Any, file_id: int) -> None:
    """Copy an uploaded file from the archive storage to the files storage; set ``File.cached``."""
    from dev.models import File

    file = request.db.get(File, file_id)
    if file is not None and not file.cached:
        # Streamed through a temporary file, as Warehouse's _copy_file_to_cache: memory stays flat.
        with request.registry["dev.archive"].get(file.path) as archived, \
                tempfile.NamedTemporaryFile() as copy:
            shutil.copyfileobj(archived, copy)
            copy.flush()
            request.registry["dev.files"].store(file.path, copy.name)
        file.cached = True


def includeme(config: Any) -> None:
    settings = config.get_settings()
    app = celery.Celery("dev", autofinalize=False, set_as_current=False)
    app.conf.update(
        accept_content=["json"],
        task_serializer="json",
        task_ignore_result=True,
        task_queues=(Queue("default", routing_key="task.#"),),
        task_default_queue="default",
        task_default_routing_key="task.default",
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A broker outage must not hold an upload request for long: the change
        # is committed and the periodic publish catches up once it is back.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5},
    )
    if settings["dev.mode"] == "embedded":
        app.conf.task_always_eager = True
        #: The futures of the tasks queued and not yet run (wait_for_embedded_tasks).
        app.embedded_pending = set()
        app.embedded_tasks = settings["dev.embedded_tasks"]
        #: The task process's executor, once a task started it; or the task thread's.
        app.embedded_executor = None if app.embedded_tasks == "process" else concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dev-embedded-task"
        )
    else:
        app.conf.broker_url = settings["celery.broker_url"]
    app.Task = WarehouseTask
    app.pyramid_config = config
    app.task(ignore_result=True, acks_late=True,
             name=app.gen_task_name(sync_file_to_cache.__name__, sync_file_to_cache.__module__),
             )(sync_file_to_cache)
    config.action(("celery", "finalize"), app.finalize)
    config.registry["celery.app"] = app

    config.add_directive("task", _get_task_from_config, action_wrap=False)
    config.add_request_method(_get_task_from_request, name="task", reify=True)
    config.add_directive("add_periodic_task", _add_periodic_task, action_wrap=False)
