"""The HTTP fetcher of ``tuf verify``: python-tuf's ngclient over the standard library.

Warehouse pins ``urllib3<2`` on purpose, and ngclient's default fetcher
imports urllib3 2 names at import time, so ``import tuf.ngclient`` fails in
Warehouse's environment. This module makes ngclient importable there (its
urllib3 fetcher stays unusable; nothing here uses it) and provides a fetcher
that needs no third-party HTTP library at all. Import it before ``tuf.ngclient``.
"""

from __future__ import annotations

import http.client
import sys
import types
import urllib.error
import urllib.request
from collections.abc import Iterator

import urllib3


def _without_urllib3_fetcher() -> None:
    """Let ``tuf.ngclient`` import under urllib3 1.x: stub the one module that needs urllib3 2."""
    if hasattr(urllib3, "BaseHTTPResponse"):
        return
    stub = types.ModuleType("tuf.ngclient._internal.proxy")

    class ProxyEnvironment:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("ngclient's urllib3 fetcher needs urllib3 2; use StdlibFetcher")

    setattr(stub, "ProxyEnvironment", ProxyEnvironment)  # noqa: B010 (a module built at run time)
    sys.modules.setdefault(stub.__name__, stub)


_without_urllib3_fetcher()

import tuf  # noqa: E402  (after the stub above)
from tuf.api import exceptions  # noqa: E402
from tuf.ngclient.fetcher import FetcherInterface  # noqa: E402


class StdlibFetcher(FetcherInterface):
    """Fetches ``http``, ``https`` and ``file`` URLs with :mod:`urllib.request`."""

    def __init__(self, socket_timeout: float = 30, chunk_size: int = 400_000,
                 app_user_agent: str | None = None) -> None:
        self.socket_timeout = socket_timeout
        self.chunk_size = chunk_size
        agent = f"python-tuf/{tuf.__version__}"
        self.user_agent = f"{app_user_agent} {agent}" if app_user_agent else agent

    def _fetch(self, url: str) -> Iterator[bytes]:
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        try:
            response = urllib.request.urlopen(request, timeout=self.socket_timeout)
        except urllib.error.HTTPError as exc:
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {exc.code} {exc.reason}", exc.code) from None
        except TimeoutError as exc:
            raise exceptions.SlowRetrievalError(f"{url}: no answer in {self.socket_timeout}s") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise exceptions.DownloadError(f"cannot fetch {url}: {reason}") from None
        return self._chunks(response, url)

    def _chunks(self, response: http.client.HTTPResponse, url: str) -> Iterator[bytes]:
        with response:
            while True:
                try:
                    chunk = response.read(self.chunk_size)
                except TimeoutError as exc:
                    raise exceptions.SlowRetrievalError(f"{url}: stalled for {self.socket_timeout}s") from exc
                if not chunk:
                    return
                yield chunk
