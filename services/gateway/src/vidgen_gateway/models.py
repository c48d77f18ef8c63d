"""The gateway's tables: projects, generations (the projection), idempotency keys and the
credit ledger (usage per user and period, budgets).

They live in the gateway's own schema (the connection's search path); the DDL is in
:mod:`vidgen_gateway.migrations` and must stay in step with these classes.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class Status(StrEnum):
    """A generation's status; it only ever moves forward (see :data:`RANK`)."""

    queued = "queued"
    generating = "generating"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.completed, Status.failed, Status.cancelled})
RANK = {
    Status.queued: 0,
    Status.generating: 1,
    Status.processing: 2,
    Status.completed: 3,
    Status.failed: 3,
    Status.cancelled: 3,
}


def _ts(nullable: bool = False) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=nullable))


class Project(SQLModel, table=True):
    """An uploaded prompt image, owned by one user."""

    __tablename__ = "projects"

    id: str = Field(primary_key=True)
    user_id: str = Field(index=False)
    image_key: str
    content_type: str
    width: int
    height: int
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str
    created_at: datetime = _ts()


class Generation(SQLModel, table=True):
    """The gateway's projection of one generation, as the frontend sees it.

    ``error_message`` is the real reason (always kept); what the user is shown is derived at
    read time. ``version`` grows by one at every visible change (the SSE event id).
    """

    __tablename__ = "generations"

    id: str = Field(primary_key=True)
    user_id: str
    project_id: str
    status: str = Status.queued.value
    progress: float = 0.0
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    model: str
    ratio: str
    duration: int
    seed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    request_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False)
    )
    image_key: str
    image_content_type: str
    runway_task_id: str | None = None
    attempt: int | None = None
    video_key: str | None = None
    thumbnail_key: str | None = None
    video_size_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    video_sha256: str | None = None
    video_duration_s: float | None = None
    video_width: int | None = None
    video_height: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    user_message: str | None = None
    runway_failure_code: str | None = None
    failed_stage: str | None = None
    cost_credits: int | None = None
    cost_final: bool = False
    estimated_cost_credits: int | None = None  # the catalog's price, at admission
    reserved_credits: int = 0  # held against the budgets until settled
    settled_cost_credits: int | None = None  # booked as spent (None: not settled yet)
    cancel_requested_at: datetime | None = _ts(nullable=True)
    version: int = Field(default=1, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    completed_at: datetime | None = _ts(nullable=True)
    priority: int = 1  # among the user's waiting generations: 0 low, 1 normal, 2 high
    submitted_at: datetime | None = _ts(nullable=True)  # the current attempt's task
    task_ended_at: datetime | None = _ts(nullable=True)  # its end was heard of (VideoReady)
    wait_reason: str | None = None  # the generator holds it back (GenerationWaiting)
    wait_until: datetime | None = _ts(nullable=True)  # ... until then, if known


class ModelCapacity(SQLModel, table=True):
    """How many tasks of a model the generator lets run at once (its last TaskSubmitted)."""

    __tablename__ = "model_capacity"

    model: str = Field(primary_key=True)
    slots: int
    updated_at: datetime = _ts()


class IdempotencyKey(SQLModel, table=True):
    """An ``Idempotency-Key`` a user sent, the hash of its request and what it created."""

    __tablename__ = "idempotency_keys"

    user_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    request_hash: str
    generation_id: str
    created_at: datetime = _ts()


class CreditUsage(SQLModel, table=True):
    """A user's credits spent (settled) and reserved in one UTC day or month."""

    __tablename__ = "credit_usage"

    user_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True)  # day | month
    period_start: date = Field(primary_key=True)
    spent: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    reserved: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class CreditBudget(SQLModel, table=True):
    """An administrator's budgets for one user (None: unlimited)."""

    __tablename__ = "credit_budgets"

    user_id: str = Field(primary_key=True)
    daily_credits: int | None = Field(default=None, sa_column=Column(BigInteger))
    monthly_credits: int | None = Field(default=None, sa_column=Column(BigInteger))
    updated_by: str
    updated_at: datetime = _ts()
