"""Prometheus metrics of a service, in its own registry (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The metrics every service exposes; services add their own to :attr:`registry`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.events_handled = Counter(
            "vidgen_events_handled_total",
            "Events handled by a consumer, by type and outcome (ok, duplicate, retried, dlq)",
            ["consumer", "type", "outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "vidgen_handler_seconds",
            "Handler latency per event type",
            ["consumer", "type"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "vidgen_consumer_lag_records",
            "Records behind the partition's high watermark",
            ["consumer", "topic", "partition"],
            registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "vidgen_outbox_lag_seconds",
            "Age of the oldest unpublished outbox row",
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "vidgen_outbox_published_total", "Outbox rows published", registry=self.registry
        )
        self.runway_calls = Counter(
            "vidgen_runway_calls_total",
            "Calls to Runway by operation and outcome",
            ["operation", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
