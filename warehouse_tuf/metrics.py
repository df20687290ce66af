"""Metrics through the host's metrics service, in Warehouse's ``IMetricsService`` shape.

The host names its metrics interface in ``tuf.metrics_interface`` (Warehouse's
``warehouse.metrics.IMetricsService`` by default); when it cannot be imported
or no service is registered for it, metrics are dropped (:class:`NullMetrics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pyramid.path import DottedNameResolver

PREFIX = "warehouse_tuf"


class NullMetrics:
    """Accepts every metric and records nothing."""

    def increment(self, metric: str, value: int = 1, tags: list[str] | None = None,
                  sample_rate: float = 1) -> None:
        pass

    def gauge(self, metric: str, value: float, tags: list[str] | None = None,
              sample_rate: float = 1) -> None:
        pass

    @contextlib.contextmanager
    def timed(self, metric: str | None = None, tags: list[str] | None = None,
              sample_rate: float = 1, use_ms: bool | None = None) -> Iterator[None]:
        yield


def host_metrics(request: Any, interface: str) -> Any:
    """The host's metrics service for ``request``, or :class:`NullMetrics`."""
    if not interface:
        return NullMetrics()
    try:
        iface = DottedNameResolver().resolve(interface)
    except ImportError:
        return NullMetrics()
    try:
        return request.find_service(iface, context=None)
    except LookupError:  # no service registered for it
        return NullMetrics()


def report_run(metrics: Any, kind: str, *, changes: int, bins: int, pending: int,
           oldest_pending_seconds: float, seconds_to_expiry: float) -> None:
    """The counters and gauges of one publish or refresh."""
    tags = [f"kind:{kind}"]
    metrics.increment(f"{PREFIX}.runs", tags=tags)
    metrics.increment(f"{PREFIX}.changes", changes, tags=tags)
    metrics.increment(f"{PREFIX}.bins_signed", bins, tags=tags)
    metrics.gauge(f"{PREFIX}.pending", pending)
    metrics.gauge(f"{PREFIX}.oldest_pending_seconds", oldest_pending_seconds)
    metrics.gauge(f"{PREFIX}.seconds_to_earliest_expiry", seconds_to_expiry)
