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
            "Events handled by a consumer, by type and outcome (ok; retried: a failure, tried "
            "again; transient: a dependency was away, tried again; dlq: given up on)",
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
            "Age of the oldest unpublished outbox row, measured by every relay process (the "
            "standbys too) on its own connection; while the database cannot be read it grows "
            "from the last value measured. Growing: the active relay cannot publish (see its "
            "log and /readyz) or no relay runs",
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "vidgen_outbox_published_total", "Outbox rows published", registry=self.registry
        )
        self.outbox_relay_active = Gauge(
            "vidgen_outbox_relay_active",
            "1 in the relay process that holds the outbox lease and publishes, 0 in standbys; "
            "the sum over a service's relay processes should be 1 (0 for longer than the "
            "lease: nobody publishes)",
            registry=self.registry,
        )
        self.outbox_republished = Counter(
            "vidgen_outbox_republished_total",
            "Outbox rows queued for publishing again because the broker lost data it had "
            "acknowledged (consumers drop the duplicates); any increase deserves a look at the "
            "broker's storage",
            registry=self.registry,
        )
        self.broker_data_loss = Counter(
            "vidgen_broker_data_loss_total",
            "Times this process found the broker had lost records it held (a topic gone, an "
            "end offset moved backwards, a new cluster id, a position beyond a log's end), by "
            "who noticed (relay: its rows are published again; consumer: it re-reads the "
            "partition from the start). Persistent broker storage keeps this at 0",
            ["component"],
            registry=self.registry,
        )
        self.runway_calls = Counter(
            "vidgen_runway_calls_total",
            "Calls to Runway by operation and outcome",
            ["operation", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
