"""The notifier's tables (schema ``notifier``) and their migrations, kept in step.

- ``endpoints``: where a user's webhooks go. ``kind`` is ``registered`` (``POST
  /api/webhooks``, its own secret) or ``request`` (a generate request's ``webhookUrl``, for
  that generation only, signed with the user's secret in ``user_secrets``). Secrets are
  sealed (:mod:`vidgen_notifier.vault`); during a rotation's overlap the previous one signs
  too, until ``previous_expires_at``. A disabled endpoint says why (``disabled_reason``).
- ``watched_generations``: the notifier's own projection of the events it consumes, what payloads
  are made of (statuses only move forward).
- ``held_events``: events of a generation whose owner is not known yet (its
  ``GenerationRequested`` not handled yet); fanned out when it is.
- ``deliveries``: one row per (event, endpoint), written in the transaction of the event's
  inbox record. ``webhook_id`` is derived from (event id, endpoint id), unique, so a
  redelivered event cannot make a second message. ``seq`` orders deliveries per (endpoint,
  generation): a later one is not claimed while an earlier one is pending. A replica claims
  due rows (``FOR UPDATE SKIP LOCKED``) and moves ``next_attempt_at`` one lease ahead under
  a fresh ``claim_token``: a replica killed mid-send leaves a row that comes due again with
  the same ``webhook_id``. ``generation_id`` is empty for a ping. ``data`` is the payload's
  data as of the event (links are presigned at each attempt).
- ``delivery_attempts``: each attempt (time, status code, latency, error); an attempt whose
  replica died has no ``finished_at`` and is marked interrupted by the next claim.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class Endpoint(SQLModel, table=True):
    __tablename__ = "endpoints"

    id: str = Field(primary_key=True)
    user_id: str
    kind: str
    generation_id: str | None = None
    url: str
    events: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    description: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    secret_sealed: str | None = None
    previous_secret_sealed: str | None = None
    previous_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class UserSecret(SQLModel, table=True):
    __tablename__ = "user_secrets"

    user_id: str = Field(primary_key=True)
    secret_sealed: str
    previous_secret_sealed: str | None = None
    previous_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class Generation(SQLModel, table=True):
    __tablename__ = "watched_generations"

    generation_id: str = Field(primary_key=True)
    user_id: str | None = None
    project_id: str | None = None
    status: str
    progress: float = 0.0
    video_key: str | None = None
    thumbnail_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    cost_credits: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime


class HeldEvent(SQLModel, table=True):
    __tablename__ = "held_events"

    event_id: str = Field(primary_key=True)
    generation_id: str
    event_type: str
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    occurred_at: datetime
    traceparent: str | None = None
    tracestate: str | None = None
    created_at: datetime


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"

    id: str = Field(primary_key=True)
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=False, unique=True, autoincrement=True)
    )
    webhook_id: str
    endpoint_id: str
    user_id: str
    generation_id: str
    event_id: str | None = None
    event_type: str
    occurred_at: datetime
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    status: str
    attempts: int = 0
    next_attempt_at: datetime
    claim_token: str | None = None
    last_error: str | None = None
    redelivery_of: str | None = None
    delivered_at: datetime | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    created_at: datetime
    updated_at: datetime


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    delivery_id: str
    at: datetime
    finished_at: datetime | None = None
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None


TABLES: tuple[type[SQLModel], ...] = (
    Endpoint,
    UserSecret,
    Generation,
    HeldEvent,
    Delivery,
    DeliveryAttempt,
)
