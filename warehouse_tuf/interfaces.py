"""The extension's service interfaces, in Warehouse's ``create_service`` style."""

from zope.interface import Attribute, Interface


class ITUFService(Interface):
    """The PEP 458 repository: records target changes, publishes signed metadata."""

    engine = Attribute("The database Engine the repository opens its own connections on.")
    settings = Attribute("The parsed tuf.* settings (a TUFSettings).")
    progress = Attribute("Called as progress(stage, done, total) while bins are signed here; None: silent.")

    def create_service(context, request):
        """Create the service for the given context and request."""

    def bin_layout():
        """The hash bins the installed targets delegates to (a BinLayout)."""

    def record_target(path, length, hashes, *, project=None, release=None):
        """Record a distribution target to add, in the caller's transaction."""

    def record_removal(path):
        """Record a target to remove, in the caller's transaction."""

    def record_release_removal(project, release):
        """Record that every target of a release goes, in the caller's transaction."""

    def record_project_removal(project):
        """Record that every target of a project goes, pages included."""

    def record_pages_changed(project):
        """Record that a project's simple pages must be rendered and signed again."""

    def bootstrap(root_bytes, targets_bytes):
        """Install offline-signed root and targets; create every bin, snapshot, timestamp."""

    def bootstrap_development():
        """Generate development keys and bootstrap with them (refused in production)."""

    def publish(*, wait=True, linger=0.0, deadline=None):
        """Sign everything pending: touched bins, then one snapshot, then one timestamp.

        ``wait=False`` returns at once when another publisher runs (it takes these changes);
        ``linger`` seconds: how long to keep looking for new changes after the last run;
        past ``deadline`` (``time.monotonic()``) no new run starts.
        """

    def refresh(window=None):
        """Re-sign every online role expiring within the window."""

    def resign_bins(indexes=None):
        """Re-sign bins (all by default), fanned out to workers, then snapshot and timestamp."""

    def sign_reserved_bins(indexes, now, renew_before):
        """Fan-out worker side: sign and store the reserved versions of these bins."""

    def backfill(*, batch_files=10000, batch_bins=4096, progress=None):
        """Sign every file and simple page the host already has (resumable)."""

    def recover():
        """Resume version numbers from what storage has published, re-publish what it lost."""

    def install(root_bytes, targets_bytes, online_signers=None, *, without_old_key=False):
        """Install offline-signed root N+1 and/or targets M+1 (rotation, renewal)."""

    def gc(*, dry_run=False, now=None):
        """Delete metadata versions outside the retention window (never a root)."""

    def status(*, deep=False):
        """Role versions, expiries, pending count, last publish, what storage lacks, problems."""


class IMetadataStorage(Interface):
    """Where published bytes live (metadata files, hash-prefixed simple pages)."""

    def from_location(location):
        """The storage at ``location`` (what the backend understands: a directory, a URL).

        Called once, by ``includeme``, with the ``tuf.storage``/``tuf.simple_storage``
        setting; the one instance is the registered service.
        """

    def put(name, data):
        """Write ``data`` under ``name`` atomically: readers see all of it or nothing."""

    def put_many(files):
        """Write every ``name: data`` of ``files``, each atomically, all durable on return."""

    def get(name):
        """The bytes stored under ``name``; ``FileNotFoundError`` if absent."""

    def exists(name):
        """Whether ``name`` is stored."""

    def delete(name):
        """Remove ``name``; no error if it is absent."""

    def list(prefix=""):
        """Every stored name starting with ``prefix``."""
