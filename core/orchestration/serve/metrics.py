"""The service's Prometheus metrics, in a registry of its own (one per app, so tests and two
apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    def __init__(self, queue_length: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("probelens_requests", "chat requests by outcome", ["outcome"], registry=r)
        self.tokens = Counter("probelens_tokens", "tokens by kind (prompt, completion)", ["kind"], registry=r)
        self.ttft = Histogram(
            "probelens_time_to_first_token_seconds", "time to first token", buckets=LATENCY_BUCKETS, registry=r
        )
        self.between = Histogram(
            "probelens_time_between_tokens_seconds", "time between tokens", buckets=LATENCY_BUCKETS, registry=r
        )
        self.flagged = Counter("probelens_flagged_answers", "answers whose max risk reached the threshold", registry=r)
        self.early_stops = Counter("probelens_early_stops", "answers ended by the risk rule", registry=r)
        self.captured = Counter("probelens_captured_answers", "answers stored by capture", registry=r)
        self.capture_errors = Counter("probelens_capture_errors", "answers capture failed to store", registry=r)
        queue = Gauge("probelens_queue_length", "requests waiting for an engine slot", registry=r)
        queue.set_function(queue_length)
        flight = Gauge("probelens_requests_in_flight", "requests being answered", registry=r)
        flight.set_function(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
