"""Prometheus metrics of the API, on one registry per application (rendered by `/metrics`).

`ServingMetrics` declares every metric once; the gateway, the decision log, the online features and
the endpoints record through it. `MetricsMiddleware` (pure ASGI, so it costs microseconds) counts and
times every request by route template and status. Names are listed in docs/serving.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Request latencies of a service whose target p99 is a few milliseconds.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The route label of requests that matched no route (404s), so that scanned paths add no series.
UNMATCHED = "unmatched"


class _Children:
    """A labelled metric's children by label values, in a plain dict: `labels()` checks the values and
    takes the metric's lock on every call, a cost the metrics recorded on every request avoid."""

    def __init__(self, metric):
        self._metric, self._children = metric, {}

    def __getitem__(self, values: tuple[str, ...]):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class ServingMetrics:
    """Every metric of the API on its own registry (a fresh one per application, so tests are independent)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("lakehouse_api_requests", "HTTP requests answered, by route template and status.",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("lakehouse_api_request_duration_seconds",
                                 "Time from request to the end of the response, by route template and status.",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.decisions = Counter("lakehouse_api_decisions", "Pricing and shipping decisions, by experiment variant.",
                                 ["endpoint", "experiment", "variant", "strategy"], registry=r)
        self.fallbacks = Counter("lakehouse_api_fallbacks",
                                 "Decisions answered by the rule-based fallback, by reason (model or features gone).",
                                 ["endpoint", "reason"], registry=r)
        self.decision_log_sent = Counter("lakehouse_decision_log_sent",
                                         "Decision records acknowledged by Kafka.", registry=r)
        self.decision_log_dropped = Counter("lakehouse_decision_log_dropped",
                                            "Decision records dropped, by reason (queue_full, kafka_unavailable, "
                                            "kafka_error, unserializable, shutdown).", ["reason"], registry=r)
        self.decision_log_queue_depth = Gauge("lakehouse_decision_log_queue_depth",
                                              "Decision records waiting in memory for Kafka.", registry=r)
        self.model_version = Gauge("lakehouse_model_version_loaded",
                                   "1 for each registered model version the API serves, by model and alias.",
                                   ["model_name", "alias", "version"], registry=r)
        self.feature_table_version = Gauge("lakehouse_online_features_table_version",
                                           "Delta version of each table the online features were built from "
                                           "(-1: the table does not exist yet).", ["table"], registry=r)
        self.rate_limited = Counter("lakehouse_api_rate_limited",
                                    "Requests refused with 429, by API key id.", ["key_id"], registry=r)
        # The children recorded on every request.
        self._requests, self._latency = _Children(self.requests), _Children(self.latency)
        self._decisions = _Children(self.decisions)

    def record_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        labels = (endpoint, method, str(status))
        self._requests[labels].inc()
        self._latency[labels].observe(seconds)

    def record_decision(self, endpoint: str, experiment: str | None, variant: str | None, strategy: str) -> None:
        self._decisions[endpoint, experiment or "", variant or "", strategy].inc()

    def record_fallback(self, endpoint: str, reason: str) -> None:
        self.fallbacks.labels(endpoint, reason).inc()

    def set_model_version(self, model_name: str, alias: str, version: str) -> None:
        """Mark `version` as the one served for (model, alias); the version it replaces disappears."""
        for labels in [s.labels for m in self.model_version.collect() for s in m.samples]:
            if labels["model_name"] == model_name and labels["alias"] == alias and labels["version"] != version:
                self.model_version.remove(model_name, alias, labels["version"])
        self.model_version.labels(model_name, alias, version).set(1)

    def set_feature_versions(self, versions: dict[str, int | None]) -> None:
        for name, version in versions.items():
            self.feature_table_version.labels(name).set(-1 if version is None else version)

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        self.decision_log_queue_depth.set_function(depth)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (`/v1/price/{sku}`, not the raw path) and
    status; an exception that escapes the application counts as 500."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            # The router stores the matched route in the scope it was given (this very dict).
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            self.metrics.record_request(endpoint, scope["method"], status, time.perf_counter() - started)
