"""A TUF client the way a user runs it: python-tuf's ngclient, with a persistent cache.

The fetcher serves a local repository (metadata and targets folders) as if
over HTTP, returning 404 for what is missing, so tests need no server.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

METADATA_URL = "https://tuf.test/metadata/"
TARGETS_URL = "https://tuf.test/targets/"
SIMPLE_URL = "https://tuf.test/simple/"


class LocalFetcher(FetcherInterface):
    """Maps URL prefixes to local folders."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots

    def _fetch(self, url: str) -> Iterator[bytes]:
        for prefix, root in self.roots.items():
            if url.startswith(prefix):
                path = root / url[len(prefix):]
                if path.is_file():
                    return iter([path.read_bytes()])
                break
        raise DownloadHTTPError(f"not found: {url}", 404)


def client_folders(owner: object, prefix: str) -> tuple[Path, Path]:
    """A cache and a download folder, removed when ``owner`` is garbage collected."""
    cache = Path(tempfile.mkdtemp(prefix=f"{prefix}-client-"))
    downloads = Path(tempfile.mkdtemp(prefix=f"{prefix}-downloads-"))
    for folder in (cache, downloads):
        weakref.finalize(owner, shutil.rmtree, folder, True)
    return cache, downloads


class Client:
    """One user's client: it trusts whatever its last refresh accepted."""

    def __init__(self, metadata: Path, targets: Path | None = None, simple: Path | None = None) -> None:
        self.cache, self.downloads = client_folders(self, "tuf")
        roots = {METADATA_URL: metadata}
        if targets is not None:
            roots[TARGETS_URL] = targets
        if simple is not None:
            roots[SIMPLE_URL] = simple
        self.fetcher = LocalFetcher(roots)
        self.metadata = metadata
        self._bootstrap: bytes | None = (metadata / "1.root.json").read_bytes()

    def updater(self, target_base_url: str = TARGETS_URL, prefix: bool = False) -> Updater:
        updater = Updater(
            metadata_dir=str(self.cache),
            metadata_base_url=METADATA_URL,
            target_dir=str(self.downloads),
            target_base_url=target_base_url,
            fetcher=self.fetcher,
            config=UpdaterConfig(prefix_targets_with_hash=prefix),
            bootstrap=self._bootstrap,
        )
        self._bootstrap = None  # from now on the cache is what this client trusts
        return updater

    def refresh(self) -> Updater:
        updater = self.updater()
        updater.refresh()
        return updater

    @property
    def timestamp_version(self) -> int:
        import json

        return json.loads((self.cache / "timestamp.json").read_bytes())["signed"]["version"]

    def download(self, path: str, *, target_base_url: str = TARGETS_URL, prefix: bool = False) -> bytes | None:
        """Refresh, then download and verify ``path``; None if no bin lists it."""
        updater = self.updater(target_base_url, prefix)
        updater.refresh()
        info = updater.get_targetinfo(path)
        if info is None:
            return None
        return Path(updater.download_target(info)).read_bytes()
