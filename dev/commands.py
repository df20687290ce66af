"""``python -m dev serve | worker | beat``: run the development host."""

from __future__ import annotations

from typing import Any

import click

from dev.cli import dev
from warehouse_tuf.services import RepositoryError
from warehouse_tuf.settings import ConfigurationError

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


def _instructions(config: Any, base: str) -> str:
    settings = config.registry.settings
    user, password = settings["dev.username"], settings["dev.password"]
    return f"""\
warehouse-tuf development host ({settings['dev.mode']} mode) on {base}/
  data:      {settings['dev.data']}
  database:  {config.registry['sqlalchemy.engine'].url.render_as_string(hide_password=True)}
  TUF keys:  {settings['tuf.dev_keys_path']}  (INSECURE development keys)

upload:   twine upload --repository-url {base}/legacy/ -u {user} -p {password} dist/*
install:  pip install --index-url {base}/simple/ <project>
delete:   curl -u {user}:{password} -X DELETE {base}/manage/project/<project>/release/<version>/
yank:     curl -u {user}:{password} -d yanked_reason=... {base}/manage/project/<project>/release/<version>/yank/
metadata: {base}/tuf/metadata/1.root.json (trust anchor), {base}/tuf/metadata/timestamp.json
verify:   TUF_DEV_DATA={settings['dev.data']} python -m dev tuf status
"""


@dev.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it local).")
@click.option("--port", envvar="PORT", default=8080, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
@click.pass_obj
def serve(config: Any, host: str, port: int, threads: int) -> None:
    """Serve the host; create its tables and bootstrap TUF (dev keys) on first run."""
    import waitress

    from dev.app import initialize
    from dev.tasks import EmbeddedBeat
    from dev.views import MAX_FORM_OVERHEAD, MAX_UPLOAD_BYTES

    try:
        bootstrapped = initialize(config)
    except (RepositoryError, ConfigurationError) as exc:
        raise click.ClickException(str(exc)) from None
    if bootstrapped:
        click.echo("bootstrapped the TUF repository with the INSECURE development keys")
    beat = None
    if config.registry.settings["dev.mode"] == "embedded":
        beat = EmbeddedBeat(config.registry["celery.app"])
        beat.start()
    # Waitress reads a whole body before calling the app: it refuses one over the upload limit
    # from its Content-Length, as the upload view does for servers that stream.
    server = waitress.create_server(config.make_wsgi_app(), host=host, port=port, threads=threads,
                                    max_request_body_size=MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD)
    click.echo(_instructions(config, f"http://{host}:{server.effective_port}"), nl=False)
    try:
        server.run()
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
