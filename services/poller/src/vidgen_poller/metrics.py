"""The poller's own metrics, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class PollerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.polls = Counter(
            "vidgen_poller_polls_total",
            "tasks.retrieve answers, by the task's status (or 'error')",
            ["status"],
            registry=registry,
        )
        self.lateness = Histogram(
            "vidgen_poller_poll_lateness_seconds",
            "How late a poll was claimed after its scheduled time",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.polls_per_task = Histogram(
            "vidgen_poller_polls_per_task",
            "tasks.retrieve calls a task needed until it finished",
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
            registry=registry,
        )
        self.deadline_exceeded = Counter(
            "vidgen_poller_deadline_exceeded_total",
            "Tasks cancelled at Runway and failed (runway_timeout) for staying active past "
            "their bound (deadline_s running, throttled_deadline_s queued); many mean Runway "
            "is slow or the organisation's concurrency is too small for the load",
            registry=registry,
        )
        self.leases_expired = Counter(
            "vidgen_poller_leases_expired_total",
            "Polls claimed by a replica that never finished them (it died or stalled past "
            "VIDGEN_CLAIM_LEASE_S), polled again; a steady rate means replicas crash or hang",
            registry=registry,
        )
        self.unanswered = Counter(
            "vidgen_poller_unanswered_total",
            "Tasks failed (runway_unreachable) because Runway gave no answer about them for "
            "unanswered_s; check the Runway key, Runway's status and the network",
            registry=registry,
        )
