"""The poller's tables (schema ``poller``) and their migrations, kept in step.

``tracked_tasks``: one row per Runway task, keyed by its id. ``state`` is ``active`` (being
polled), ``refresh`` (finished, but its output URLs expired: retrieve again for fresh ones)
or ``done``. ``next_poll_at`` is the whole schedule: a restart loses nothing and re-creates
no timers. A replica claims due rows with ``FOR UPDATE SKIP LOCKED`` and moves their
``next_poll_at`` one lease ahead under a fresh ``claim_token``; only the holder of the token
may write the poll's result, so no task is polled twice at once. The ``*_s`` columns are the
schedule's knowledge (:class:`vidgen_poller.schedule.Observed`), in seconds since submission;
``duration_s`` is a finished task's learned duration. ``poller_cancels`` remembers cancel
requests, whatever order events arrive in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from vidgen_common.migrations import Migration


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


class PollerCancel(SQLModel, table=True):
    __tablename__ = "poller_cancels"

    generation_id: str = Field(primary_key=True)
    requested_at: datetime


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "poller",
        1,
        "tracked tasks and cancels",
        (
            """CREATE TABLE tracked_tasks (
                runway_task_id text PRIMARY KEY,
                generation_id text NOT NULL,
                user_id text NOT NULL,
                model text NOT NULL,
                duration int NOT NULL,
                attempt int NOT NULL,
                submitted_at timestamptz NOT NULL,
                state text NOT NULL CHECK (state IN ('active', 'refresh', 'done')),
                status text NOT NULL DEFAULT 'SUBMITTED',
                progress double precision NOT NULL DEFAULT 0,
                reported_status text,
                reported_progress double precision,
                active_since_s double precision NOT NULL DEFAULT 0,
                last_not_running_s double precision,
                last_poll_s double precision,
                p1_at_s double precision,
                p1 double precision,
                p2_at_s double precision,
                p2 double precision,
                throttled_streak int NOT NULL DEFAULT 0,
                was_throttled boolean NOT NULL DEFAULT false,
                polls int NOT NULL DEFAULT 0,
                errors int NOT NULL DEFAULT 0,
                next_poll_at timestamptz NOT NULL,
                claim_token text,
                cancel_requested boolean NOT NULL DEFAULT false,
                deadline_at timestamptz NOT NULL,
                estimated_cost_credits int,
                cost_credits int,
                output_urls jsonb,
                failure text,
                failure_code text,
                duration_s double precision,
                finished_at timestamptz,
                traceparent text,
                tracestate text,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX tracked_tasks_due ON tracked_tasks (next_poll_at) "
            "WHERE state IN ('active', 'refresh')",
            "CREATE INDEX tracked_tasks_generation ON tracked_tasks (generation_id)",
            "CREATE INDEX tracked_tasks_durations ON tracked_tasks (finished_at) "
            "WHERE duration_s IS NOT NULL",
            """CREATE TABLE poller_cancels (
                generation_id text PRIMARY KEY,
                requested_at timestamptz NOT NULL
            )""",
        ),
    ),
)
