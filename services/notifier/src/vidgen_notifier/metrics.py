"""The notifier's own metrics, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.deliveries = Counter(
            "vidgen_notifier_deliveries_total",
            "Delivery attempts by outcome: delivered (2xx), retried (a failure retried on the "
            "schedule), gone (410: endpoint disabled), gave_up (schedule exhausted: endpoint "
            "disabled)",
            ["outcome"],
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "vidgen_notifier_oldest_pending_seconds",
            "Age of the oldest delivery still pending to an enabled endpoint (0: none)",
            registry=registry,
        )
        self.latency = Histogram(
            "vidgen_notifier_attempt_seconds",
            "Duration of one delivery attempt (resolve, connect, answer)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
            registry=registry,
        )
