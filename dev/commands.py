"""``python -m dev serve | worker | beat``: run the development host."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import click

from dev import logs
from dev.cli import LazyConfig, dev
from warehouse_tuf.services import RepositoryError
from warehouse_tuf.settings import ConfigurationError

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


def _keys_line(config: Any, report: dict[str, Any]) -> str:
    """The keys the repository actually trusts: the development keys, or a ceremony's."""
    settings = config.registry.settings
    if report.get("development_keys"):
        return f"{settings['tuf.dev_keys_path']}  (INSECURE development keys)"
    signers = ", ".join(signer["uri"] for signer in report.get("online_signers", ())) or "none configured"
    return f"from a signing ceremony (online signer: {signers})"


def _instructions(config: Any, base: str, report: dict[str, Any]) -> str:
    settings = config.registry.settings
    user, password = settings["dev.username"], settings["dev.password"]
    python = f"{sys.prefix}/bin/python"
    return f"""\
warehouse-tuf development host ({settings['dev.mode']} mode) on {base}/
  data:      {settings['dev.data']}
  database:  {config.registry['sqlalchemy.engine'].url.render_as_string(hide_password=True)}
  TUF keys:  {_keys_line(config, report)}

upload:   twine upload --repository-url {base}/legacy/ -u {user} -p {password} dist/*
install:  pip install --index-url {base}/simple/ <project>
delete:   curl -u {user}:{password} -X DELETE {base}/manage/project/<project>/release/<version>/
yank:     curl -u {user}:{password} -d yanked_reason=... {base}/manage/project/<project>/release/<version>/yank/
metadata: {base}/tuf/metadata/1.root.json (trust anchor), {base}/tuf/metadata/timestamp.json
targets:  {python} -m dev tuf targets <project> --verify
status:   {python} -m dev tuf status
(these commands work from any directory; set TUF_DEV_DATA={settings['dev.data']} if you moved it)
"""


def _bind(app: Any, host: str, port: int, threads: int) -> Any:
    """The waitress server, bound; a port in use is a one-line error."""
    import waitress

    from dev.views import MAX_FORM_OVERHEAD, MAX_UPLOAD_BYTES

    try:
        # Waitress reads a whole body before calling the app: it refuses one over the upload limit
        # from its Content-Length, as the upload view does for servers that stream.
        return waitress.create_server(app, host=host, port=port, threads=threads,
                                      max_request_body_size=MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is in use (another 'make serve'?): stop it, or choose "
                "another port with PORT=8081 make serve") from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _initialize(config: Any) -> tuple[bool, dict[str, Any]]:
    """Tables and bootstrap (dev keys) on first run, then the status; one-line errors."""
    from sqlalchemy.exc import DatabaseError

    from dev.app import initialize
    from warehouse_tuf.cli import service

    url = config.registry["sqlalchemy.engine"].url
    try:
        bootstrapped = initialize(config)
        with service(config) as tuf_service:
            return bootstrapped, tuf_service.status()
    except (RepositoryError, ConfigurationError) as exc:
        raise click.ClickException(str(exc)) from None
    except DatabaseError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        if url.get_backend_name() == "sqlite":
            raise click.ClickException(
                f"the database {url.database} cannot be read ({reason}): it is damaged or not "
                f"SQLite. Move it away, or delete {config.registry.settings['dev.data']} to start "
                "afresh") from None
        raise click.ClickException(f"the database {url.render_as_string(hide_password=True)} "
                                   f"cannot be used ({reason})") from None


@dev.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it local).")
@click.option("--port", envvar="PORT", default=8080, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
@click.pass_obj
def serve(config: Any, host: str, port: int, threads: int) -> None:
    """Serve the host; create its tables and bootstrap TUF (dev keys) on first run.

    Embedded mode runs its tasks in a child process, so that a publish does not
    take the interpreter lock from the request threads (``TUF_DEV_EMBEDDED_TASKS=thread``
    runs them on a thread of this process instead).
    """
    from paste.translogger import TransLogger

    from dev.app import SERVER_URL_FILE
    from dev.tasks import EmbeddedBeat, start_embedded_tasks

    if isinstance(config, LazyConfig):  # not configured yet: its tasks go to a process of their own
        config.default("dev.embedded_tasks", "process", "TUF_DEV_EMBEDDED_TASKS")
    logs.configure()
    # Bound first: a port in use is reported before anything is created in the data directory.
    server = _bind(TransLogger(config.make_wsgi_app(), setup_console_handler=False), host, port, threads)
    try:
        bootstrapped, report = _initialize(config)
    except click.ClickException:
        server.close()
        raise
    if bootstrapped:
        click.echo("bootstrapped the TUF repository with the INSECURE development keys")
    base = f"http://{host}:{server.effective_port}"
    (Path(config.registry.settings["dev.data"]) / SERVER_URL_FILE).write_text(base + "\n")
    beat = None
    if config.registry.settings["dev.mode"] == "embedded":
        start_embedded_tasks(config.registry["celery.app"])
        beat = EmbeddedBeat(config.registry["celery.app"])
        beat.start()
    click.echo(_instructions(config, base, report), nl=False)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if beat is not None:
            beat.stopped.set()


def _celery(config: Any, command: str) -> Any:
    if config.registry.settings["dev.mode"] != "distributed":
        raise click.UsageError(f"'{command}' needs distributed mode: set TUF_DEV_MODE=distributed")
    return config.registry["celery.app"]


@dev.command(context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(config: Any, celery_args: tuple[str, ...]) -> None:
    """A Celery worker (distributed mode); extra arguments go to ``celery worker``."""
    app = _celery(config, "worker")
    # One process per worker by default: start several for parallelism.
    app.worker_main(["worker", "--pool=solo", "--loglevel=INFO", *celery_args])


@dev.command(context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def beat(config: Any, celery_args: tuple[str, ...]) -> None:
    """Celery beat (distributed mode): the periodic publish and refresh."""
    app = _celery(config, "beat")
    schedule = f"{config.registry.settings['dev.data']}/celerybeat-schedule"
    app.start(["beat", f"--schedule={schedule}", "--loglevel=INFO", *celery_args])
