"""The generator's own metrics, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GeneratorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.submission_unknown = Counter(
            "vidgen_generator_submission_unknown_total",
            "Creates whose outcome is unknown (Runway may hold a task we have no id for), "
            "by cause (no_response, stale_intent) and the policy applied (fail, resubmit)",
            ["cause", "policy"],
            registry=registry,
        )
        self.deferred = Counter(
            "vidgen_generator_deferred_total",
            "Creates put off for a retry, by error code (429, 5xx, unreachable, …)",
            ["reason"],
            registry=registry,
        )
        self.waiting_for_budget = Gauge(
            "vidgen_generator_waiting_for_budget",
            "Due creates held back by the per-model concurrency budget (last claim pass)",
            registry=registry,
        )
        self.submitted = Counter(
            "vidgen_generator_tasks_submitted_total",
            "Runway tasks created, by model",
            ["model"],
            registry=registry,
        )
        self.orphaned = Counter(
            "vidgen_generator_orphaned_tasks_total",
            "Tasks Runway created that could not be recorded (their id is logged)",
            registry=registry,
        )
