"""The generator's own metrics, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GeneratorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.submission_unknown = Counter(
            "vidgen_generator_submission_unknown_total",
            "Creates whose outcome is unknown (Runway may hold a paid task we have no id "
            "for), by cause (no_response: timeout or cut connection; error_answer: 5xx/408 or "
            "an unreadable body; owner_died: the replica sending it died; abandoned: this "
            "replica lost track of it (a bug); stale_intent: an intent older than "
            "VIDGEN_INTENT_STALE_S) and policy (fail, resubmit). Each is a "
            "generation failed submission_unknown (or created again); a rise means Runway or "
            "the network misbehaves, or generator pods are being killed: check the logs",
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
        self.waiting = Gauge(
            "vidgen_generator_waiting",
            "Pending creates held back, by reason: daily_cap_reached (Runway's daily cap of "
            "their model; they go when its 24-hour window lets one more through) or "
            "organization_out_of_credits (the organisation's creditBalance does not cover "
            "them: add credits). Last claim pass; each change is also logged at WARNING",
            ["reason"],
            registry=registry,
        )
        self.submitted = Counter(
            "vidgen_generator_tasks_submitted_total",
            "Runway tasks created, by model",
            ["model"],
            registry=registry,
        )
        self.orphaned_creates = Counter(
            "vidgen_generator_orphaned_creates_total",
            "Creates that were in flight when the replica sending them died (kill -9, OOM, node "
            "loss): Runway may hold a paid task whose id is lost for good (each is also logged "
            "at ERROR with its generation id, and counted in submission_unknown as owner_died). "
            "At most VIDGEN_MAX_CONCURRENT_SUBMISSIONS per death; a rise means generator pods "
            "are being killed instead of stopped: check OOM kills and the termination grace "
            "period",
            registry=registry,
        )
        self.late_tasks = Counter(
            "vidgen_generator_late_tasks_total",
            "Task ids Runway returned after their intent had been given up, by outcome: "
            "adopted (recorded on the row waiting to be created again: no second task), "
            "cancelled (the generation had ended: deleted at Runway), cancel_failed (could "
            "not be deleted: the id is in the ERROR log and in late_tasks; delete it by hand)",
            ["outcome"],
            registry=registry,
        )
        self.stalled = Gauge(
            "vidgen_generator_stalled_submissions",
            "Submissions waiting longer than VIDGEN_STALL_WARN_S to be sent (last sweep); each "
            "is logged with why it waits: the per-model budget, Runway's Retry-After, a retry "
            "due later or no free slot. Check Runway's status and the budgets if it grows",
            registry=registry,
        )
