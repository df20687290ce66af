"""Audit a published repository as an outsider: only URLs and python-tuf's ngclient.

The audit refreshes like any client (from a trusted root, or trust on first
use of ``1.root.json``), then checks what a client only looks at lazily: every
bin the snapshot lists is served, has the listed version, verifies with the
keys targets delegates to, has not expired and only holds targets that hash
to it; a sample of targets is downloaded and checked against their hashes.
With a state file it also remembers the bytes of each version it saw, so a
version rewritten with other bytes is caught on the next audit.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# First: it makes tuf.ngclient importable under Warehouse's urllib3 1.x.
from warehouse_tuf.fetcher import StdlibFetcher  # isort: skip

from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, Snapshot, TargetFile, Targets, Timestamp
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from warehouse_tuf.models import utcnow

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
    targets_sampled: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


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
                report.problems.append(f"cannot fetch 1.root.json to start from: {_describe(exc)}")
                return report
        updater = Updater(
            metadata_dir=work, metadata_base_url=metadata_url, target_dir=work,
            target_base_url=targets_url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=root,
        )
        try:
            updater.refresh()
        except Exception as exc:
            report.problems.append(f"a client cannot refresh: {_describe(exc)}")
            return report
        trusted = {name: Metadata.from_file(str(Path(work) / f"{name}.json"))
                   for name in ("timestamp", "snapshot", "targets")}
        report.timestamp_version = trusted["timestamp"].signed.version
        report.snapshot_version = trusted["snapshot"].signed.version
        state = _State(state_file)
        state.see("timestamp", trusted["timestamp"].signed, (Path(work) / "timestamp.json").read_bytes(), report)
        bins = _check_bins(fetcher, metadata_url, trusted["targets"], trusted["snapshot"], state, report)
        if targets_url or simple_url:
            _sample_targets(updater, bins, targets_url, simple_url, sample, report)
        state.save()
    return report


def _check_bins(
    fetcher: FetcherInterface, metadata_url: str, targets: Metadata[Targets],
    snapshot: Metadata[Snapshot], state: "_State", report: AuditReport,
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
            if version is None:
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
                if succinct.get_role_for_target(path) != name:
                    report.problems.append(f"{name}: lists {path}, which belongs in {succinct.get_role_for_target(path)}")
                found.append(target)
            state.see(name, bin_md.signed, data, report)
    return found


def _sample_targets(
    updater: Updater, targets: list[TargetFile], targets_url: str | None,
    simple_url: str | None, sample: int, report: AuditReport,
) -> None:
    """Download a random sample of targets and check them against their signed hashes."""
    chosen = random.sample(targets, min(sample, len(targets)))
    with tempfile.TemporaryDirectory(prefix="tuf-verify-targets-") as downloads:
        for index, target in enumerate(chosen):
            page = _is_page(target.path)
            base = simple_url if page else targets_url
            if base is None:
                continue
            # Pages are served under hash-prefixed names (consistent snapshots); files are not.
            updater.config.prefix_targets_with_hash = page
            try:
                updater.download_target(target, str(Path(downloads) / str(index)), base.rstrip("/") + "/")
            except Exception as exc:
                report.problems.append(f"target {target.path}: {_describe(exc)}")
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
