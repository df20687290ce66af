"""What every command shares: the service of a scripting request, one-line errors, progress
bars, and how key ids and durations are shown (the admin page shows them the same way)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, NoReturn, TypeVar

import click

T = TypeVar("T")

#: Key ids are shown by their first 12 hex digits everywhere (ceremony, status, targets).
KEYID_CHARS = 12


def short_keyid(keyid: str) -> str:
    return keyid[:KEYID_CHARS]


@contextlib.contextmanager
def service(config: Any) -> Iterator[Any]:
    """The TUF service (``ITUFService``) of a scripting request on the host's registry."""
    from pyramid.scripting import prepare

    from warehouse_tuf.interfaces import ITUFService

    env = prepare(registry=config.registry)
    try:
        yield env["request"].find_service(ITUFService, context=None)
    finally:
        env["closer"]()


class CommandError(click.ClickException):
    """A command's error: one line, ``error: <message>``, on stderr; exit status 1."""

    def __init__(self, message: object) -> None:
        # One line whatever the message: logs and monitoring read the first line only.
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class UnreadableError(CommandError):
    """Nothing could be read (the database, storage, or a server): exit status 2."""

    exit_code = 2


def fail(message: Exception | str) -> NoReturn:
    raise CommandError(message)


#: What a command reports as a one-line error: repository, setting, signer, ceremony and
#: storage problems (module -> its exception classes, subclasses included).
EXTENSION_ERRORS = {
    "warehouse_tuf.exceptions": ("RepositoryError", "CeremonyError"),
    "warehouse_tuf.settings": ("ConfigurationError",),
    "warehouse_tuf.signing": ("SigningError",),
    "warehouse_tuf.storage": ("StorageError",),
}


def _errors() -> tuple[type[Exception], ...]:
    """The classes of :data:`EXTENSION_ERRORS` whose modules are imported: only those can have
    been raised, and the offline ceremony's venv has no Pyramid to import the others with."""
    return tuple(getattr(sys.modules[module], name) for module, names in EXTENSION_ERRORS.items()
                 if module in sys.modules for name in names)


class CommandGroup(click.Group):
    """A group whose every command, nested groups included, reports the extension's errors
    (:func:`_errors`) as one :class:`CommandError` line, never a traceback."""

    group_class = type  # subgroups are CommandGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _errors() as exc:
            raise CommandError(exc) from None


def call(config: Any, operation: Callable[[Any], T]) -> T:
    """``operation(service)`` with a scripting request's service."""
    with service(config) as tuf_service:
        return operation(tuf_service)


class Progress:
    """``progress(stage, done, total)`` callbacks drawn as click progress bars, one per stage.

    Bars are drawn only on a terminal; elsewhere (logs, pipes, tests) nothing is
    printed, so output stays one line per result.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = click.progressbar(length=max(total, 1), label=f"{stage:<8}", file=self.stream)
            self.bar.render_progress()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def relative(seconds: float) -> str:
    """``in 20h``, ``3m ago``: a duration from now, in hours up to two days, then days."""
    ahead = seconds > 0
    left = abs(int(seconds))
    if left < 60:
        text = f"{left}s"
    elif left < 3600:
        text = f"{left // 60}m"
    elif left < 2 * 86400:
        minutes = left % 3600 // 60
        text = f"{left // 3600}h" + (f"{minutes:02d}m" if left < 10 * 3600 and minutes else "")
    else:
        text = f"{left // 86400}d"
    return f"in {text}" if ahead else f"{text} ago"


def keyids_text(keyids: list[str]) -> str:
    return ", ".join(short_keyid(keyid) for keyid in keyids)
