"""Audit a published repository as an outsider: only URLs and python-tuf's ngclient.

The audit refreshes like any client (from a trusted root, or trust on first
use of ``1.root.json``), then checks what a client only looks at lazily: every
bin the snapshot lists is served, has the listed version, verifies with the
keys targets delegates to, has not expired and only holds targets that hash
to it; a sample of files and one of simple pages are downloaded and checked
against their hashes, from URLs derived from the metadata URL (Warehouse's
``/packages/`` and ``/simple/`` on its host) unless given.
With a state file it also remembers the bytes of each version it saw, so a
version rewritten with other bytes is caught on the next audit.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import tempfile
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# First: it makes tuf.ngclient importable under Warehouse's urllib3 1.x.
from warehouse_tuf.fetcher import StdlibFetcher  # isort: skip

from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, Snapshot, TargetFile, Targets, Timestamp
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from warehouse_tuf import trust_model
from warehouse_tuf.clock import utcnow

#: Largest metadata file the audit downloads (a 16,384-bin snapshot is about 0.6 MB).
MAX_METADATA_BYTES = 16 * 1024 * 1024
_FETCH_THREADS = 8


@dataclass
class AuditReport:
    """What the audit checked and every problem it found."""

    problems: list[str] = field(default_factory=list)
    timestamp_version: int | None = None
    snapshot_version: int | None = None
    bins_checked: int = 0
    #: Files and pages downloaded and checked (``files_sampled + pages_sampled``).
    targets_sampled: int = 0
    files_sampled: int = 0
    pages_sampled: int = 0
    #: Files and pages the bins list.
    files_listed: int = 0
    pages_listed: int = 0
    #: Set when the server could not be reached at all: one plain sentence.
    unreachable: str | None = None
    #: The trust model the newest root puts in force (``trust_model.py``), once a client refreshed.
    trust_model: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def sample_summary(self) -> str:
        """``10 of 31 files and 10 of 31 pages checked``: exactly what was downloaded."""
        return (f"{self.files_sampled} of {self.files_listed} files and {self.pages_sampled} of "
                f"{self.pages_listed} pages checked")


def derived_urls(metadata_url: str, targets_url: str | None = None,
                 simple_url: str | None = None) -> tuple[str, str]:
    """Where files and hash-prefixed pages are served, unless given: ``/packages/`` and
    ``/simple/`` on the metadata URL's host, as Warehouse (and the development host) serve them."""
    parts = urllib.parse.urlsplit(metadata_url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None
    if origin is None:
        return targets_url or "", simple_url or ""
    return targets_url or f"{origin}/packages/", simple_url or f"{origin}/simple/"


def _unreachable(url: str, exc: Exception) -> str | None:
    """One sentence when ``exc`` means the server is not there (refused, unknown host, no answer)."""
    from tuf.api.exceptions import DownloadError, SlowRetrievalError

    if isinstance(exc, DownloadHTTPError) or not isinstance(exc, (DownloadError, SlowRetrievalError)):
        return None
    origin = urllib.parse.urlsplit(url)
    where = f"{origin.scheme}://{origin.netloc}" if origin.netloc else url
    if isinstance(exc, SlowRetrievalError):
        reason = "no answer in time"
    else:  # "cannot fetch URL: <urlopen error [Errno 111] Connection refused>"
        reason = re.sub(r"^<urlopen error (.*)>$", r"\1", str(exc).rsplit(": ", 1)[-1])
        reason = re.sub(r"^\[Errno -?\d+\] ", "", reason)
    return f"cannot reach {where} ({reason}): is the server running, and is the URL right?"


def audit(
    metadata_url: str, *, root: bytes | None = None, targets_url: str | None = None,
    simple_url: str | None = None, sample: int = 10, state_file: Path | None = None,
    fetcher: FetcherInterface | None = None,
) -> AuditReport:
    """Audit the repository at ``metadata_url``; ``root`` is the trusted root (else ``1.root.json``)."""
    metadata_url = metadata_url.rstrip("/") + "/"
    fetcher = fetcher or StdlibFetcher(app_user_agent="warehouse-tuf-verify")
    report = AuditReport()
    with tempfile.TemporaryDirectory(prefix="tuf-verify-") as work:
        if root is None:
            try:
                root = fetcher.download_bytes(metadata_url + "1.root.json", MAX_METADATA_BYTES)
            except Exception as exc:
                report.unreachable = _unreachable(metadata_url, exc)
                report.problems.append(report.unreachable or
                                       f"cannot fetch 1.root.json to start from: {_describe(exc)}")
                return report
        updater = Updater(
            metadata_dir=work, metadata_base_url=metadata_url, target_dir=work,
            target_base_url=targets_url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=root,
        )
        try:
            updater.refresh()
        except Exception as exc:
            report.unreachable = _unreachable(metadata_url, exc)
            report.problems.append(report.unreachable or f"a client cannot refresh: {_describe(exc)}")
            return report
        trusted: dict[str, Metadata[Any]] = {name: Metadata.from_file(str(Path(work) / f"{name}.json"))
                   for name in ("root", "timestamp", "snapshot", "targets")}
        report.trust_model = trust_model.model(trusted["root"].signed)
        report.timestamp_version = trusted["timestamp"].signed.version
        report.snapshot_version = trusted["snapshot"].signed.version
        state = _State(state_file)
        state.see("timestamp", trusted["timestamp"].signed, (Path(work) / "timestamp.json").read_bytes(), report)
        bins = _check_bins(fetcher, metadata_url, trusted["targets"], trusted["snapshot"], state, report)
        _sample_targets(updater, bins, targets_url, simple_url, sample, report)
        state.save()
    return report


def _check_bins(
    fetcher: FetcherInterface, metadata_url: str, targets: Metadata[Targets],
    snapshot: Metadata[Snapshot], state: _State, report: AuditReport,
) -> list[TargetFile]:
    """Check every bin the delegation names; return every target they list."""
    succinct = targets.signed.delegations.succinct_roles if targets.signed.delegations else None
    if succinct is None:
        report.problems.append("targets has no succinct hash-bin delegation")
        return []
    listed = {name.removesuffix(".json") for name in snapshot.signed.meta} - {"targets"}
    names = list(succinct.get_roles())
    for extra in sorted(listed - set(names)):
        report.problems.append(f"snapshot lists {extra}, which targets does not delegate to")
    now = utcnow()

    def fetch(name: str) -> tuple[str, int | None, bytes | Exception | None]:
        meta = snapshot.signed.meta.get(f"{name}.json")
        if meta is None:
            return name, None, None
        try:
            return name, meta.version, fetcher.download_bytes(
                f"{metadata_url}{meta.version}.{name}.json", MAX_METADATA_BYTES
            )
        except Exception as exc:
            return name, meta.version, exc

    found: list[TargetFile] = []
    with ThreadPoolExecutor(_FETCH_THREADS) as pool:
        for name, version, data in pool.map(fetch, names):
            report.bins_checked += 1
            file_name = f"{version}.{name}.json"
            if version is None or data is None:
                report.problems.append(f"{name}: not listed in snapshot version {snapshot.signed.version}")
                continue
            if isinstance(data, DownloadHTTPError) and data.status_code == 404:
                report.problems.append(f"{name}: {file_name} is missing (snapshot lists version {version})")
                continue
            if isinstance(data, Exception):
                report.problems.append(f"{name}: cannot fetch {file_name}: {_describe(data)}")
                continue
            try:
                bin_md = Metadata[Targets].from_bytes(data)
            except Exception as exc:
                report.problems.append(f"{name}: {file_name} is not valid targets metadata: {_describe(exc)}")
                continue
            if bin_md.signed.version != version:
                report.problems.append(
                    f"{name}: {file_name} says version {bin_md.signed.version}, snapshot lists {version}"
                )
            result = targets.signed.get_verification_result(name, bin_md.signed_bytes, bin_md.signatures)
            if not result.verified:
                report.problems.append(
                    f"{name}: {file_name} is signed by {len(result.signed)} of the {result.threshold} "
                    "online key(s) targets delegates to (bytes changed under the same version?)"
                )
            if bin_md.signed.is_expired(now):
                report.problems.append(f"{name}: {file_name} expired on {bin_md.signed.expires.isoformat()}")
            for path, target in bin_md.signed.targets.items():
                owner = succinct.get_role_for_target(path)
                if owner != name:
                    report.problems.append(f"{name}: lists {path}, which belongs in {owner}")
                found.append(target)
            state.see(name, bin_md.signed, data, report)
    return found


def _sample_targets(
    updater: Updater, targets: list[TargetFile], targets_url: str | None,
    simple_url: str | None, sample: int, report: AuditReport,
) -> None:
    """Download up to ``sample`` files and ``sample`` pages, at random, and check their hashes.

    A kind with no URL to fetch it from is reported as a problem, never skipped silently.
    """
    pages = [target for target in targets if _is_page(target.path)]
    files = [target for target in targets if not _is_page(target.path)]
    report.files_listed, report.pages_listed = len(files), len(pages)
    with tempfile.TemporaryDirectory(prefix="tuf-verify-targets-") as downloads:
        for kind, listed, base in (("files", files, targets_url), ("pages", pages, simple_url)):
            chosen = random.sample(listed, min(sample, len(listed)))
            if not base:
                if chosen:
                    report.problems.append(f"{kind} cannot be checked: no URL serves them (give --"
                                           f"{'targets' if kind == 'files' else 'simple'}-url)")
                continue
            for index, target in enumerate(chosen):
                # Pages are served under hash-prefixed names (consistent snapshots); files are not.
                updater.config.prefix_targets_with_hash = kind == "pages"
                try:
                    updater.download_target(target, str(Path(downloads) / f"{kind}{index}"),
                                            base.rstrip("/") + "/")
                except Exception as exc:
                    report.problems.append(f"target {target.path}: {_describe(exc)}")
                setattr(report, f"{kind}_sampled", getattr(report, f"{kind}_sampled") + 1)
                report.targets_sampled += 1


def _is_page(path: str) -> bool:
    """A project's simple page target: ``<name>/<name>.html`` or ``<name>/<name>.json``."""
    parts = path.split("/")
    return len(parts) == 2 and parts[1] in (f"{parts[0]}.html", f"{parts[0]}.json")


class _State:
    """The sha256 of the last version of each role an earlier audit saw."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.seen: dict[str, list] = {}
        if path is not None and path.exists():
            self.seen = json.loads(path.read_text())

    def see(self, name: str, signed: Targets | Timestamp, data: bytes, report: AuditReport) -> None:
        digest = hashlib.sha256(data).hexdigest()
        previous = self.seen.get(name)
        if previous is not None:
            version, old_digest = previous
            if signed.version == version and digest != old_digest:
                report.problems.append(
                    f"{name}: version {version} now has other bytes than an earlier audit saw"
                )
            elif signed.version < version:
                report.problems.append(f"{name}: version went back from {version} to {signed.version}")
        self.seen[name] = [signed.version, digest]

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.seen, sort_keys=True))


def _describe(exc: Exception) -> str:
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def verify_targets(metadata_url: str, root: bytes, paths: list[str], *, targets_url: str,
                   simple_url: str, fetcher: FetcherInterface | None = None) -> dict[str, str]:
    """Fetch and verify each target of ``paths`` as a client does (ngclient, from ``root``).

    Returns path -> problem for each one that fails; an empty dict when all verify.
    """
    metadata_url = metadata_url.rstrip("/") + "/"
    fetcher = fetcher or StdlibFetcher(app_user_agent="warehouse-tuf-targets")
    problems: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tuf-targets-") as work:
        updater = Updater(metadata_dir=work, metadata_base_url=metadata_url, target_dir=work,
                          fetcher=fetcher, config=UpdaterConfig(), bootstrap=root)
        try:
            updater.refresh()
        except Exception as exc:
            reason = _unreachable(metadata_url, exc) or f"a client cannot refresh: {_describe(exc)}"
            return dict.fromkeys(paths, reason)
        for index, path in enumerate(paths):
            page = _is_page(path)
            updater.config.prefix_targets_with_hash = page
            try:
                info = updater.get_targetinfo(path)
                if info is None:
                    problems[path] = "not in the published metadata (not yet published?)"
                    continue
                updater.download_target(info, str(Path(work) / f"target{index}"),
                                        (simple_url if page else targets_url).rstrip("/") + "/")
            except Exception as exc:
                problems[path] = _describe(exc)
    return problems
