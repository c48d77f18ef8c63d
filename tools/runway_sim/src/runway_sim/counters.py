"""What happened, for tests and benchmarks (`GET /_sim/counters`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    """Plain tallies; `snapshot()` is the JSON shape served by the admin API.

    - `calls[endpoint][status]`: responses per endpoint and HTTP status ("lost" when a create's
      response was never delivered, see `Scenario.lost_create`)
    - `creates_accepted` / `creates_by_model`: tasks created (lost responses included)
    - `retrieves_per_task[task_id]`: `GET /v1/tasks/{id}` calls (any outcome)
    - `final_statuses` / `failure_codes`: tasks that reached a terminal status
    - `credits_charged`: net credits taken from the balance (refunds deducted)
    - `faults[kind]`: injected faults that fired
    """

    calls: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    creates_accepted: int = 0
    creates_by_model: Counter[str] = field(default_factory=Counter)
    retrieves_per_task: Counter[str] = field(default_factory=Counter)
    final_statuses: Counter[str] = field(default_factory=Counter)
    failure_codes: Counter[str] = field(default_factory=Counter)
    credits_charged: int = 0
    credits_refunded: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    uploads_completed: int = 0

    def call(self, endpoint: str, status: int | str) -> None:
        self.calls[endpoint][str(status)] += 1

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def snapshot(self, live_statuses: dict[str, int]) -> dict[str, Any]:
        return {
            "calls": {endpoint: dict(by_status) for endpoint, by_status in self.calls.items()},
            "creates_accepted": self.creates_accepted,
            "creates_by_model": dict(self.creates_by_model),
            "retrieves_per_task": dict(self.retrieves_per_task),
            "tasks_by_status": live_statuses,
            "final_statuses": dict(self.final_statuses),
            "failure_codes": dict(self.failure_codes),
            "credits_charged": self.credits_charged,
            "credits_refunded": self.credits_refunded,
            "faults": dict(self.faults),
            "uploads_completed": self.uploads_completed,
        }
