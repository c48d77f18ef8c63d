"""The poller's tables (schema ``poller``) and their migrations, kept in step.

``tracked_tasks``: one row per Runway task, keyed by its id. ``state`` is ``active`` (being
polled), ``refresh`` (finished, but its output URLs expired: retrieve again for fresh ones)
or ``done``. ``next_poll_at`` is the whole schedule: a restart loses nothing and re-creates
no timers. A replica claims due rows with ``FOR UPDATE SKIP LOCKED`` and moves their
``next_poll_at`` one lease ahead under a fresh ``claim_token``; only the holder of the token
may write the poll's result, so no task is polled twice at once. The ``*_s`` columns are the
schedule's knowledge (:class:`vidgen_poller.schedule.Observed`), in seconds since submission;
``duration_s`` is a finished task's learned duration. ``deadline_at`` is the submission plus
``deadline_s`` (informational: the bounds are judged by :mod:`vidgen_poller.deadline`);
``answered_at`` is when Runway last answered about the task, or when tracking (re)started.
``poller_cancels`` remembers cancel requests, whatever order events arrive in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class TrackedTask(SQLModel, table=True):
    __tablename__ = "tracked_tasks"

    runway_task_id: str = Field(primary_key=True)
    generation_id: str
    user_id: str
    model: str
    duration: int
    attempt: int
    submitted_at: datetime
    state: str
    status: str = "SUBMITTED"
    progress: float = 0.0
    reported_status: str | None = None
    reported_progress: float | None = None
    active_since_s: float = 0.0
    last_not_running_s: float | None = None
    last_poll_s: float | None = None
    p1_at_s: float | None = None
    p1: float | None = None
    p2_at_s: float | None = None
    p2: float | None = None
    throttled_streak: int = 0
    was_throttled: bool = False
    polls: int = 0
    errors: int = 0
    next_poll_at: datetime
    claim_token: str | None = None
    cancel_requested: bool = False
    deadline_at: datetime
    answered_at: datetime | None = None
    estimated_cost_credits: int | None = None
    cost_credits: int | None = None
    output_urls: list[str] | None = Field(default=None, sa_column=Column(JSONB))
    failure: str | None = None
    failure_code: str | None = None
    duration_s: float | None = None
    finished_at: datetime | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    created_at: datetime
    updated_at: datetime
