"""Prometheus metrics of the service (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from typing import Callable

from pie_retriever.errors import require

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Requests by route and status, latency histograms, micro-batch sizes, queue depth and index sizes."""

    def __init__(self, queue_depth: Callable[[], float], index_sizes: Callable[[], dict[str, int]]) -> None:
        prom = require("prometheus_client", "serve", "The service's /metrics")
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("pie_requests_total", "HTTP requests by route and status", ["route", "method", "status"],
                                     registry=self.registry)
        self.latency = prom.Histogram("pie_request_seconds", "HTTP request latency by route", ["route"],
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = prom.Histogram("pie_search_batch_queries", "queries per micro-batch (one retrieve_batch call)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.shed = prom.Counter("pie_search_shed_total", "searches answered 503 because the queue was full", registry=self.registry)
        depth = prom.Gauge("pie_search_queue_queries", "queries waiting or running in the micro-batcher", registry=self.registry)
        depth.set_function(queue_depth)
        self.sizes = prom.Gauge("pie_index_demonstrations", "demonstrations per served index", ["index"], registry=self.registry)
        self._index_sizes = index_sizes

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        for name, size in self._index_sizes().items():
            self.sizes.labels(name).set(size)
        return self.prom.generate_latest(self.registry), self.prom.CONTENT_TYPE_LATEST
