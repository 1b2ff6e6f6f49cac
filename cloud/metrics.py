"""Prometheus metrics of the cloud processes, in the text exposition format.

The counters live where the work happens — an ingest worker's ``IngestStats``, a webhook
worker's ``counters``, the API's request counter — and are read at scrape time by the
collectors here, so the hot paths pay a dict increment, nothing more.

Every process exposes them:

* the API on its own port, ``GET /metrics`` (``METRICS_TOKEN`` set: a bearer token is
  required, for an API that faces the internet);
* ingest and webhook workers on ``METRICS_PORT`` (prometheus_client's HTTP server in a
  thread; ``0`` turns it off; a port already taken is logged, the worker runs on);
* ``make run`` (everything in one process): on the API's ``/metrics``.

Names: ``kickstand_<part>_<counter>_total`` with the worker as label ``worker``; per-reason
counters get a ``reason`` label (``channel`` for the per-channel one); gauges (lags, ages)
are plain ``kickstand_<part>_<name>``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger("kickstand.cloud.metrics")

#: The content type of the text format (served by the API's /metrics).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Labels of the per-key counters, by field name (default ``reason``).
_KEY_LABEL = {"by_channel": "channel", "requests": "route"}


class _Sources:
    """Named stats objects to read at scrape time (a worker registers, and leaves)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_part: dict[str, dict[str, Callable[[], object]]] = {}

    def add(self, part: str, worker: str, read: Callable[[], object]) -> None:
        with self._lock:
            self._by_part.setdefault(part, {})[worker] = read

    def remove(self, part: str, worker: str) -> None:
        with self._lock:
            self._by_part.get(part, {}).pop(worker, None)

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self._lock:
            parts = {part: dict(workers) for part, workers in self._by_part.items()}
        return {part: {w: read() for w, read in ws.items()} for part, ws in parts.items()}


_sources = _Sources()


def register(part: str, worker: str, stats: object | Callable[[], object]) -> None:
    """Export ``stats`` (a dataclass of counters, or a Mapping, or a callable returning one)
    as ``kickstand_<part>_…{worker=…}`` until :func:`unregister`."""
    read: Callable[[], object] = stats if callable(stats) else (lambda: stats)
    _sources.add(part, worker, read)


def unregister(part: str, worker: str) -> None:
    _sources.remove(part, worker)


def _fields(stats: object) -> Iterator[tuple[str, object]]:
    if isinstance(stats, Mapping):
        yield from ((str(k), v) for k, v in stats.items())
    elif dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        for f in dataclasses.fields(stats):
            yield f.name, getattr(stats, f.name)


def _is_gauge(name: str, value: object) -> bool:
    """Floats (lags, ages) and names that say they are a level, not a count."""
    return isinstance(value, float) or name.endswith(("_depth", "_in_flight", "_open"))


class StatsCollector(Collector):
    """Turns the registered stats objects into metric families at every scrape."""

    def collect(self) -> Iterator[Any]:
        families: dict[str, Any] = {}

        def family(kind: type, name: str, doc: str, labels: list[str]) -> Any:
            if name not in families:
                families[name] = kind(name, doc, labels=labels)
            return families[name]

        for part, workers in sorted(_sources.snapshot().items()):
            for worker, stats in sorted(workers.items()):
                for field, value in _fields(stats):
                    base = f"kickstand_{part}_{field}"
                    if isinstance(value, Counter | dict):
                        label = _KEY_LABEL.get(field, "reason")
                        fam = family(
                            CounterMetricFamily, base, f"{part} {field} by {label}",
                            ["worker", label],
                        )
                        for key, count in sorted(value.items()):
                            fam.add_metric([worker, str(key)], float(count))
                    elif isinstance(value, bool) or not isinstance(value, int | float):
                        continue
                    elif _is_gauge(field, value):
                        fam = family(GaugeMetricFamily, base, f"{part} {field}", ["worker"])
                        fam.add_metric([worker], float(value))
                    else:
                        fam = family(CounterMetricFamily, base, f"{part} {field}", ["worker"])
                        fam.add_metric([worker], float(value))
        yield from families.values()


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(StatsCollector())


def render() -> bytes:
    """The text exposition of everything registered in this process."""
    return generate_latest(REGISTRY)


def serve(port: int, host: str = "0.0.0.0") -> bool:  # all interfaces: scraped from outside
    """Serve /metrics on ``port`` in a thread (ingest, webhooks). False when it cannot."""
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.warning("event=metrics_not_served port=%s error=%s", port, exc)
        return False
    log.info("event=metrics_served port=%s", port)
    return True


__all__ = ["CONTENT_TYPE", "REGISTRY", "StatsCollector", "register", "render", "serve",
           "unregister"]
