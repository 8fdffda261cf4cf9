"""Prometheus metrics for the embeddings service, one registry per app.

A registry per app (not prometheus_client's global one) keeps two apps in one process, as in the
tests, from counting each other's requests. ``GET /metrics`` serves :meth:`ServeMetrics.render`::

    embedtune_requests_total{route="/v1/embeddings",status="200"} 12.0
    embedtune_batch_size_bucket{le="8.0"} 3.0
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServeMetrics", "CONTENT_TYPE", "ROUTES"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Requests to any other path are counted under route="other", so a scanner trying random URLs
# cannot blow up the number of series.
# The *_created series (one timestamp per label set) double the output and tell nothing here.
disable_created_metrics()

ROUTES = ("/v1/embeddings", "/v1/models", "/embed", "/health", "/info", "/metrics")

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    """The service's counters and histograms, and their Prometheus text form."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "embedtune_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "embedtune_errors",
            "Error responses by route and error type.",
            ["route", "type"],
            registry=r,
        )
        self.latency = Histogram(
            "embedtune_request_latency_seconds",
            "Time from request to response, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inputs = Counter(
            "embedtune_inputs", "Texts embedded, by route.", ["route"], registry=r
        )
        self.tokens = Counter(
            "embedtune_tokens",
            "Tokens the model read (after truncation), by route.",
            ["route"],
            registry=r,
        )
        self.batch_size = Histogram(
            "embedtune_batch_size",
            "Texts per model call (after coalescing requests).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "embedtune_batch_seconds",
            "Time spent in one model call.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "embedtune_queue_texts", "Texts waiting for the model.", registry=r
        )

    @staticmethod
    def route_label(path: str) -> str:
        return path if path in ROUTES else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route = self.route_label(path)
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_error(self, path: str, error_type: str) -> None:
        self.errors.labels(route=self.route_label(path), type=error_type).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
