"""Prometheus collectors that read live values from their owner at scrape time.

The stores keep their counts as plain attributes (they are needed anyway) and expose them through a collector
instead of updating prometheus metric objects on every change, so nothing can drift and no hot path pays for
metrics. A part registers its collector on the registry it is given; on the process-wide default registry the
newest instance of a part replaces the previous one (tests and restarts create several stores in one process,
and a second registration under the same metric names would fail).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry


class LiveCollector(Collector):
    """Yields whatever ``read()`` returns at scrape time."""

    def __init__(self, read: Callable[[], Iterable[Metric]], names: Iterable[str]) -> None:
        self._read = read
        self._names = list(names)

    def collect(self) -> Iterable[Metric]:
        return list(self._read())

    def describe(self) -> Iterable[Metric]:
        # Lets the registry check name clashes without calling ``read`` at registration time.
        return [Metric(name, "", "untyped") for name in self._names]


_global_lock = threading.Lock()
_on_global: dict[str, Collector] = {}


def register(part: str, collector: Collector, registry: CollectorRegistry | None) -> Callable[[], None]:
    """Register ``collector`` for ``part``; return a function that unregisters it (idempotent)."""
    if registry is None:
        return lambda: None
    with _global_lock:
        if registry is REGISTRY:
            previous = _on_global.pop(part, None)
            if previous is not None:
                REGISTRY.unregister(previous)
            _on_global[part] = collector
        registry.register(collector)

    done = False

    def unregister() -> None:
        nonlocal done
        with _global_lock:
            if done:
                return
            done = True
            if registry is REGISTRY:
                if _on_global.get(part) is not collector:
                    return  # a newer instance took the names over
                del _on_global[part]
            registry.unregister(collector)

    return unregister
