"""What the repository raises when it refuses; each leaves everything as it was."""

from __future__ import annotations

from warehouse_tuf.signing import SigningError


class RepositoryError(RuntimeError):
    """The repository cannot do what was asked; nothing was changed."""


class NotBootstrappedError(RepositoryError):
    """No root and targets are installed yet."""


class BootstrapError(RepositoryError):
    """The offline-signed root or targets is not acceptable."""


class InstallError(RepositoryError):
    """A new root or targets is not acceptable; nothing was installed."""


class StorageAheadError(RepositoryError):
    """Storage holds newer metadata than the database knows (restored from a backup?)."""


class BinLayoutError(RepositoryError):
    """The bin settings disagree with the bins the installed targets delegates to."""


class CeremonyError(ValueError):
    """A ceremony input is wrong; the message is one line and names the problem."""


class DevelopmentKeyError(SigningError):
    """Production was asked to trust or sign with a development key."""
