"""How long a tracked task may take before the poller gives up on it (pure functions).

The poller always asks Runway first: a finished task is reported as it finished whatever the
time (a SUCCEEDED one yields its video, a FAILED one keeps Runway's code). The bounds below
only judge a task that Runway still reports *active*, or about which Runway does not answer.

Two clocks, in seconds since the task was submitted (``now_s``):

* **THROTTLED** time: Runway queues the task behind the organisation's concurrency limit for
  the model. That is our own load, not Runway being slow, and a task cancelled before it runs
  is refunded, so it does not count towards ``deadline_s``; it has its own, longer bound
  ``throttled_deadline_s`` (counted from submission, so a task waiting in the queue for ever
  still ends).
* **Active** time (PENDING or RUNNING): counted from ``active_since_s``, the submission or,
  for a task Runway held THROTTLED, the last poll that still saw it throttled (so the count
  errs long by at most one poll interval). Past ``deadline_s`` the task is cancelled at Runway
  and the generation fails ``runway_timeout``.

A task stays within ``throttled_deadline_s + deadline_s`` of its submission in all.

When Runway does not answer at all about a task (errors only: 5xx, timeouts, 401/403), the
poller keeps asking with backoff: the task may well have produced its video. Only after
``unanswered_s`` without a single answer does it give up (``runway_unreachable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vidgen_poller.schedule import Observed


@dataclass(frozen=True)
class Bounds:
    deadline_s: float
    throttled_deadline_s: float
    unanswered_s: float


class Overdue(StrEnum):
    RUNNING = "running"  # PENDING/RUNNING for longer than deadline_s
    THROTTLED = "throttled"  # queued THROTTLED for longer than throttled_deadline_s


def overdue(obs: Observed, now_s: float, bounds: Bounds) -> Overdue | None:
    """Whether a task that a poll at ``now_s`` saw active (``obs`` includes that poll) is
    past its bound; None while it is within it."""
    if obs.status == "THROTTLED":
        return Overdue.THROTTLED if now_s > bounds.throttled_deadline_s else None
    return Overdue.RUNNING if now_s - obs.active_since_s > bounds.deadline_s else None


def unanswered(since_s: float, now_s: float, bounds: Bounds) -> bool:
    """Whether Runway has not answered about a task since ``since_s`` for too long."""
    return now_s - since_s > bounds.unanswered_s


def timeout_message(reason: Overdue, obs: Observed, now_s: float) -> str:
    """The ``runway_timeout`` failure's message."""
    if reason is Overdue.THROTTLED:
        return (
            f"The Runway task waited {now_s:.0f} s THROTTLED in Runway's queue (the "
            "organisation's concurrency limit for the model) without starting; it was "
            "cancelled at Runway."
        )
    return (
        f"The Runway task did not finish within {now_s - obs.active_since_s:.0f} s of Runway "
        "starting it; it was cancelled at Runway."
    )
