"""The SQL behind accepting a generation: few round trips, because every request pays them.

Under the caller's per-user advisory lock, :func:`precheck` reads in one statement all that
decides the answer (an earlier request with this Idempotency-Key, the project, the in-flight
count, the requests in the rate window), and :func:`insert` writes the generation and the
key in one statement. The event goes to the outbox through the unit of work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:k))")

_PRECHECK = text(
    """
    SELECT p.id AS project_id, p.image_key, p.content_type,
           k.request_hash, k.generation_id AS earlier_id, k.created_at AS key_created_at,
           (SELECT count(*) FROM generations g
             WHERE g.user_id = :u AND g.status IN ('queued', 'generating', 'processing'))
             AS in_flight,
           r.recent, r.oldest
    FROM (SELECT 1) AS one
    LEFT JOIN projects p ON p.id = :pid AND p.user_id = :u
    LEFT JOIN idempotency_keys k ON k.user_id = :u AND k.key = CAST(:key AS text)
    CROSS JOIN LATERAL (
        SELECT count(*) AS recent, min(created_at) AS oldest
        FROM generations WHERE user_id = :u AND created_at > :since
    ) AS r
    """
)

_FORGET_KEY = text("DELETE FROM idempotency_keys WHERE user_id = :u AND key = :key")

_INSERT = text(
    """
    WITH g AS (
        INSERT INTO generations (id, user_id, project_id, status, prompt, model, ratio,
                                 duration, seed, metadata, image_key, image_content_type,
                                 created_at, updated_at)
        VALUES (:id, :u, :pid, 'queued', :prompt, :model, :ratio, :duration, :seed,
                CAST(:metadata AS jsonb), :image_key, :content_type, :now, :now)
        RETURNING id
    )
    INSERT INTO idempotency_keys (user_id, key, request_hash, generation_id, created_at)
    SELECT :u, CAST(:key AS text), :hash, g.id, :now FROM g WHERE CAST(:key AS text) IS NOT NULL
    """
)


@dataclass(frozen=True)
class Precheck:
    project_id: str | None
    image_key: str | None
    content_type: str | None
    request_hash: str | None
    earlier_id: str | None
    key_created_at: datetime | None
    in_flight: int
    recent: int
    oldest: datetime | None


async def lock_user(s: AsyncSession, user_id: str) -> None:
    """Serialise this user's generate requests until the transaction ends."""
    await run_sql(s, _LOCK, {"k": f"generate:{user_id}"})


async def precheck(
    s: AsyncSession, user_id: str, project_id: str, key: str | None, since: datetime
) -> Precheck:
    row = (
        await run_sql(s, _PRECHECK, {"u": user_id, "pid": project_id, "key": key, "since": since})
    ).one()
    return Precheck(**row._mapping)


async def forget_key(s: AsyncSession, user_id: str, key: str) -> None:
    await run_sql(s, _FORGET_KEY, {"u": user_id, "key": key})


async def insert(
    s: AsyncSession,
    *,
    generation_id: str,
    user_id: str,
    request: dict[str, Any],
    metadata: dict[str, Any],
    image_key: str,
    content_type: str,
    key: str | None,
    request_hash: str,
    now: datetime,
) -> None:
    await run_sql(
        s,
        _INSERT,
        {
            "id": generation_id,
            "u": user_id,
            "pid": request["projectId"],
            "prompt": request["prompt"],
            "model": request["model"],
            "ratio": request["ratio"],
            "duration": request["duration"],
            "seed": request["seed"],
            "metadata": json.dumps(metadata),
            "image_key": image_key,
            "content_type": content_type,
            "key": key,
            "hash": request_hash,
            "now": now,
        },
    )
