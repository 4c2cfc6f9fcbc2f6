"""Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from verifiers.base import VerifyResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rlvr_requests", "HTTP requests by endpoint and status code", ["endpoint", "code"],
            registry=r,
        )
        self.items = Counter(
            "rlvr_items", "Scored items by verifier and result status", ["verifier", "status"],
            registry=r,
        )
        self.timeouts = Counter("rlvr_timeouts", "Items that hit their time limit", ["verifier"], registry=r)
        self.errors = Counter("rlvr_errors", "Items whose verification failed", ["verifier"], registry=r)
        self.latency = Histogram(
            "rlvr_verify_seconds", "Verification time per item", ["verifier"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.request_latency = Histogram(
            "rlvr_request_seconds", "Request latency by endpoint", ["endpoint"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.in_flight = Gauge("rlvr_items_in_flight", "Items accepted and not yet scored", registry=r)
        self.workers_replaced = Gauge(
            "rlvr_workers_replaced", "Worker processes killed and replaced", registry=r
        )

    def observe(self, verifier: str, result: VerifyResult, elapsed_s: float) -> None:
        self.items.labels(verifier, result.status).inc()
        self.latency.labels(verifier).observe(elapsed_s)
        if result.status == "timeout":
            self.timeouts.labels(verifier).inc()
        elif result.status == "error":
            self.errors.labels(verifier).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
