"""The generator's tables (schema ``generator``), kept in step with ``migrations/``.

``submissions``: one row per Runway task the generator means to create, keyed by
``(generation_id, attempt)``. Its ``state`` moves only forward::

    pending ──claim──▶ claimed ──intent committed──▶ intent ──task id committed──▶ submitted
       ▲                  │ (lease expired)            │
       └──────────────────┘◀──── 429/5xx: retry_at ────┘ (definitely not created)
    pending/claimed ──cancel──▶ cancelled        intent ──no answer──▶ failed (policy) | pending

The ``claimed → intent`` step is a compare-and-set on ``claim_token``, committed *before*
the create is sent: at most one create per row is ever in flight, whatever the number of
replicas. The intent records its ``owner`` (the replica sending the create) and
``intent_at`` by the database's clock. ``task_ended_at`` is set when the task's end is heard
of (for the concurrency budget). ``priority`` (0 low, 1 normal, 2 high) orders one user's
waiting rows; between users the claim goes by fair share (:func:`vidgen_generator.store.due`).
``wait_reason`` / ``wait_until``: why a pending row is held back besides a busy slot (Runway's
daily cap, until when; the organisation's credits) or, after such a hold, that it waits for a
slot again (``waiting_for_capacity``); ``GenerationWaiting`` is sent when it changes (see
:mod:`vidgen_generator.holds`).
``generator_cancels`` remembers cancel requests, whatever order events arrive in.

``generator_instances``: one row per live generator process, ``last_seen`` refreshed by the
database's clock every ``VIDGEN_INSTANCE_HEARTBEAT_S``. An intent whose owner stopped
heart-beating was in flight when that process died: its task id is lost for good (Runway
lists no tasks), and the unknown-submission policy applies.

``late_tasks``: task ids Runway returned for an intent that had been given up meanwhile and
that could not be recorded on their generation (it had failed, been cancelled, or got another
task); each is cancelled at Runway (``outcome``), never dropped silently.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

STATES = ("pending", "claimed", "intent", "submitted", "failed", "cancelled")
PRIORITIES = {"low": 0, "normal": 1, "high": 2}
"""``GenerationRequested.priority`` → ``submissions.priority`` (higher is claimed first)."""


class Submission(SQLModel, table=True):
    __tablename__ = "submissions"

    generation_id: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    user_id: str
    project_id: str
    image_key: str
    image_content_type: str
    prompt: str
    model: str
    ratio: str
    duration: int
    seed: int | None = None
    priority: int = 1
    state: str
    tries: int = 0
    retry_at: datetime
    claim_token: str | None = None
    lease_until: datetime | None = None
    intent_at: datetime | None = None
    owner: str | None = None
    runway_task_id: str | None = Field(default=None, unique=True)
    submitted_at: datetime | None = None
    estimated_cost_credits: int | None = None
    task_ended_at: datetime | None = None
    cost_credits: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    wait_reason: str | None = None
    wait_until: datetime | None = None
    created_at: datetime
    updated_at: datetime


class GeneratorInstance(SQLModel, table=True):
    __tablename__ = "generator_instances"

    instance_id: str = Field(primary_key=True)
    started_at: datetime
    last_seen: datetime


LATE_OUTCOMES = ("to_cancel", "cancelled", "cancel_failed")


class LateTask(SQLModel, table=True):
    __tablename__ = "late_tasks"

    runway_task_id: str = Field(primary_key=True)
    generation_id: str
    attempt: int
    reason: str
    outcome: str
    tries: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
