"""SQL on the notifier's tables; every function runs in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_notifier.models import (
    Delivery,
    DeliveryAttempt,
    Endpoint,
    Generation,
    HeldEvent,
    UserSecret,
)

INTERRUPTED = "interrupted: the notifier stopped during the attempt (sent again, same webhook-id)"

# -- projection ---------------------------------------------------------------------------------


async def generation(session: AsyncSession, generation_id: str) -> Generation | None:
    """The generation's row, locked (events of one generation are applied one at a time)."""
    query = select(Generation).where(Generation.generation_id == generation_id).with_for_update()
    return (await session.exec(query)).first()


async def hold(session: AsyncSession, held: HeldEvent) -> None:
    await run_sql(
        session,
        "INSERT INTO held_events (event_id, generation_id, event_type, data, occurred_at, "
        "traceparent, tracestate, created_at) VALUES (:id, :g, :t, CAST(:d AS jsonb), :at, "
        ":tp, :ts, :now) ON CONFLICT DO NOTHING",
        {
            "id": held.event_id,
            "g": held.generation_id,
            "t": held.event_type,
            "d": json.dumps(held.data),
            "at": held.occurred_at,
            "tp": held.traceparent,
            "ts": held.tracestate,
            "now": held.created_at,
        },
    )


async def take_held(session: AsyncSession, generation_id: str) -> Sequence[HeldEvent]:
    """The held events of a generation (oldest first), removed."""
    query = (
        select(HeldEvent)
        .where(HeldEvent.generation_id == generation_id)
        .order_by(col(HeldEvent.created_at))
    )
    rows = (await session.exec(query)).all()
    if rows:
        await run_sql(
            session, "DELETE FROM held_events WHERE generation_id = :g", {"g": generation_id}
        )
    return rows


# -- endpoints ----------------------------------------------------------------------------------


async def endpoints_for(
    session: AsyncSession, user_id: str, event_type: str, generation_id: str
) -> Sequence[Endpoint]:
    """The user's endpoints that want ``event_type`` (with the generation's own one)."""
    query = (
        select(Endpoint)
        .where(
            Endpoint.user_id == user_id,
            (col(Endpoint.kind) == "registered")
            | ((col(Endpoint.kind) == "request") & (col(Endpoint.generation_id) == generation_id)),
            col(Endpoint.events).contains([event_type]),
        )
        .order_by(col(Endpoint.created_at), col(Endpoint.id))
    )
    return (await session.exec(query)).all()


async def endpoint(
    session: AsyncSession, endpoint_id: str, user_id: str | None = None, *, lock: bool = False
) -> Endpoint | None:
    """A registered endpoint (of ``user_id`` when given); a request endpoint when no user."""
    query = select(Endpoint).where(Endpoint.id == endpoint_id)
    if user_id is not None:
        query = query.where(Endpoint.user_id == user_id, Endpoint.kind == "registered")
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def list_endpoints(session: AsyncSession, user_id: str) -> Sequence[Endpoint]:
    query = (
        select(Endpoint)
        .where(Endpoint.user_id == user_id, Endpoint.kind == "registered")
        .order_by(col(Endpoint.created_at), col(Endpoint.id))
    )
    return (await session.exec(query)).all()


async def count_endpoints(session: AsyncSession, user_id: str) -> int:
    result = await run_sql(
        session,
        "SELECT count(*) FROM endpoints WHERE user_id = :u AND kind = 'registered'",
        {"u": user_id},
    )
    return int(result.scalar_one())


async def lock_user(session: AsyncSession, user_id: str) -> None:
    """Serialise one user's endpoint changes (the per-user limit holds under concurrency)."""
    await run_sql(
        session,
        "SELECT pg_advisory_xact_lock(hashtextextended('notifier-user:' || :u, 0))",
        {"u": user_id},
    )


async def delete_endpoint(session: AsyncSession, endpoint_id: str, user_id: str) -> bool:
    result = await run_sql(
        session,
        "DELETE FROM endpoints WHERE id = :id AND user_id = :u AND kind = 'registered'",
        {"id": endpoint_id, "u": user_id},
    )
    return bool(result.rowcount)


async def insert_request_endpoint(session: AsyncSession, ep: Endpoint) -> None:
    await run_sql(
        session,
        "INSERT INTO endpoints (id, user_id, kind, generation_id, url, events, enabled, "
        "created_at, updated_at) VALUES (:id, :u, 'request', :g, :url, CAST(:ev AS jsonb), "
        "true, :now, :now) ON CONFLICT DO NOTHING",
        {
            "id": ep.id,
            "u": ep.user_id,
            "g": ep.generation_id,
            "url": ep.url,
            "ev": json.dumps(ep.events),
            "now": ep.created_at,
        },
    )


async def disable_endpoint(
    session: AsyncSession, endpoint_id: str, reason: str, now: datetime
) -> None:
    """Disable the endpoint with ``reason``; its pending deliveries wait (``disabled``)."""
    await run_sql(
        session,
        "UPDATE endpoints SET enabled = false, disabled_reason = :r, disabled_at = :now, "
        "updated_at = :now WHERE id = :id",
        {"id": endpoint_id, "r": reason, "now": now},
    )
    await run_sql(
        session,
        "UPDATE deliveries SET status = 'disabled', claim_token = NULL, updated_at = :now "
        "WHERE endpoint_id = :id AND status = 'pending'",
        {"id": endpoint_id, "now": now},
    )


async def resume_endpoint(session: AsyncSession, endpoint_id: str, now: datetime) -> None:
    """Enabled again: the deliveries that waited are due now, with a fresh schedule."""
    await run_sql(
        session,
        "UPDATE endpoints SET enabled = true, disabled_reason = NULL, disabled_at = NULL, "
        "updated_at = :now WHERE id = :id",
        {"id": endpoint_id, "now": now},
    )
    await run_sql(
        session,
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = :now, "
        "updated_at = :now WHERE endpoint_id = :id AND status = 'disabled'",
        {"id": endpoint_id, "now": now},
    )


async def user_secret(
    session: AsyncSession, user_id: str, *, lock: bool = False
) -> UserSecret | None:
    query = select(UserSecret).where(UserSecret.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


# -- deliveries ---------------------------------------------------------------------------------


async def insert_delivery(session: AsyncSession, d: Delivery) -> bool:
    """Write a delivery; False when this (event, endpoint) has one already."""
    result = await run_sql(
        session,
        "INSERT INTO deliveries (id, webhook_id, endpoint_id, user_id, generation_id, event_id, "
        "event_type, occurred_at, data, status, attempts, next_attempt_at, redelivery_of, "
        "traceparent, tracestate, created_at, updated_at) VALUES (:id, :wid, :ep, :u, :g, :e, "
        ":t, :at, CAST(:data AS jsonb), :status, 0, :due, :of, :tp, :ts, :now, :now) "
        "ON CONFLICT (webhook_id) WHERE redelivery_of IS NULL DO NOTHING RETURNING 1",
        {
            "id": d.id,
            "wid": d.webhook_id,
            "ep": d.endpoint_id,
            "u": d.user_id,
            "g": d.generation_id,
            "e": d.event_id,
            "t": d.event_type,
            "at": d.occurred_at,
            "data": json.dumps(d.data),
            "status": d.status,
            "due": d.next_attempt_at,
            "of": d.redelivery_of,
            "tp": d.traceparent,
            "ts": d.tracestate,
            "now": d.created_at,
        },
    )
    return result.scalar_one_or_none() is not None


# One statement, one round trip: the due rows leased under the token with their attempt
# counted, the attempt a dead replica left open closed as interrupted, this one opened.
# Every sub-statement sees the snapshot from before the statement, so ``closed`` cannot close
# the attempts ``opened`` inserts; each runs once whether or not its output is read.
_CLAIM = text(
    """
WITH due AS (
    SELECT d.id FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND e.enabled
      AND NOT EXISTS (
          SELECT 1 FROM deliveries p
          WHERE p.endpoint_id = d.endpoint_id AND p.generation_id = d.generation_id
            AND p.status = 'pending' AND p.seq < d.seq)
    ORDER BY d.next_attempt_at, d.seq
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE deliveries SET claim_token = :token, next_attempt_at = :until,
           attempts = attempts + 1, updated_at = :now
    WHERE id IN (SELECT id FROM due)
    RETURNING *
), closed AS (
    UPDATE delivery_attempts SET finished_at = :now, error = :interrupted
    WHERE delivery_id IN (SELECT id FROM claimed) AND finished_at IS NULL
), opened AS (
    INSERT INTO delivery_attempts (delivery_id, at) SELECT id, :now FROM claimed
)
SELECT * FROM claimed ORDER BY seq
"""
).columns(data=JSONB)


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease_s: float
) -> tuple[Sequence[Delivery], str]:
    """Due deliveries whose earlier ones (same endpoint and generation) are done, skipping
    rows other replicas hold; each moved one lease ahead, its attempt counted and opened.
    An attempt a dead replica left open is closed as interrupted. One round trip."""
    token = uuid.uuid4().hex
    params = {
        "now": now,
        "limit": limit,
        "token": token,
        "until": now + timedelta(seconds=lease_s),
        "interrupted": INTERRUPTED,
    }
    result = await (await session.connection()).execute(_CLAIM, params)
    return [Delivery(**row._mapping) for row in result], token


# The attempt's result and the delivery's new state, written only while ``token`` still
# holds the claim (a lease that ran out was claimed again under another token; a disabled
# endpoint's rows lost theirs): one round trip, the row locked by the UPDATE itself.
_RECORD = text(
    """
WITH held AS (
    UPDATE deliveries SET status = :s, claim_token = NULL, last_error = :last_error,
           next_attempt_at = coalesce(:due, next_attempt_at), updated_at = :now,
           delivered_at = CASE WHEN :s = 'delivered' THEN :now ELSE delivered_at END
    WHERE id = :id AND claim_token = :token
    RETURNING id
), attempt AS (
    UPDATE delivery_attempts SET finished_at = :now, status_code = :c, latency_ms = :l,
           error = :e
    WHERE id = (SELECT max(id) FROM delivery_attempts WHERE delivery_id = :id)
      AND EXISTS (SELECT 1 FROM held)
)
SELECT count(*) FROM held
"""
)


async def record_attempt(
    session: AsyncSession,
    delivery_id: str,
    token: str,
    *,
    now: datetime,
    status: str,
    status_code: int | None,
    latency_ms: int,
    error: str | None,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Close the delivery's open attempt (``error`` shown on it) and move the delivery to
    ``status`` (``pending`` again at ``next_attempt_at`` for a retry; ``error`` becomes its
    ``last_error`` unless delivered); False, and nothing written, when ``token`` no longer
    holds the claim."""
    result = await run_sql(
        session,
        _RECORD,
        {
            "id": delivery_id,
            "token": token,
            "s": status,
            "last_error": None if status == "delivered" else error,
            "due": next_attempt_at,
            "now": now,
            "c": status_code,
            "l": latency_ms,
            "e": error,
        },
    )
    return bool(result.scalar_one())


async def next_due_at(session: AsyncSession) -> datetime | None:
    result = await run_sql(
        session,
        "SELECT min(d.next_attempt_at) FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
        "WHERE d.status = 'pending' AND e.enabled",
    )
    value = result.scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def oldest_pending(session: AsyncSession) -> datetime | None:
    result = await run_sql(
        session,
        "SELECT min(d.created_at) FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
        "WHERE d.status = 'pending' AND e.enabled",
    )
    value = result.scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def delivery(session: AsyncSession, delivery_id: str, endpoint_id: str) -> Delivery | None:
    query = select(Delivery).where(Delivery.id == delivery_id, Delivery.endpoint_id == endpoint_id)
    return (await session.exec(query)).first()


async def deliveries_page(
    session: AsyncSession, endpoint_id: str, before_seq: int | None, limit: int
) -> Sequence[Delivery]:
    """Newest first, ``limit`` of them, older than ``before_seq`` when given."""
    query = select(Delivery).where(Delivery.endpoint_id == endpoint_id)
    if before_seq is not None:
        query = query.where(col(Delivery.seq) < before_seq)
    query = query.order_by(col(Delivery.seq).desc()).limit(limit)
    return (await session.exec(query)).all()


async def attempts_of(
    session: AsyncSession, ids: Sequence[str]
) -> dict[str, list[DeliveryAttempt]]:
    if not ids:
        return {}
    query = (
        select(DeliveryAttempt)
        .where(col(DeliveryAttempt.delivery_id).in_(list(ids)))
        .order_by(col(DeliveryAttempt.id))
    )
    found: dict[str, list[DeliveryAttempt]] = {i: [] for i in ids}
    for a in (await session.exec(query)).all():
        found[a.delivery_id].append(a)
    return found


def as_json(value: Any) -> str:
    return json.dumps(value)
