"""Requesting, reading, listing and cancelling generations (the API's use cases).

``request`` writes the generation (``queued``) and ``GenerationRequested`` in one transaction
(the outbox relays the event), after the idempotency, ownership and per-user limit checks. A
per-user advisory lock serialises one user's requests, so two concurrent retries with one
``Idempotency-Key`` create one generation and the limits cannot be overrun by a burst.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.events import GenerationCancelRequested, GenerationRequested
from vidgen_common.uow import UnitOfWork
from vidgen_gateway import admission
from vidgen_gateway.errors import (
    AlreadyFinished,
    IdempotencyConflict,
    NotFound,
    RateLimited,
    Unprocessable,
)
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.projection import notify_change
from vidgen_gateway.runway_models import DEFAULT_MODEL, DEFAULT_RATIO, MODELS, problems
from vidgen_gateway.schemas import GenerateRequest, GenerateResponse
from vidgen_gateway.settings import GatewaySettings

_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class Accepted:
    response: GenerateResponse
    replayed: bool


def check_id(value: str, what: str = "generation") -> str:
    """``value`` if it can be an id; otherwise it names nothing: 404 (without a query)."""
    if not _ID.match(value):
        raise NotFound(f"No such {what}.")
    return value


def normalise(body: GenerateRequest) -> dict[str, object]:
    """The request with defaults applied; refused (422) unless Runway accepts it."""
    model = body.model or DEFAULT_MODEL
    rule = MODELS.get(model)
    duration = body.duration or (rule.default_duration if rule else 5)
    ratio = body.ratio or DEFAULT_RATIO
    found = problems(model, ratio, duration)
    if found:
        raise Unprocessable(
            "Runway does not accept this model, ratio and duration.", details={"problems": found}
        )
    return {
        "projectId": body.project_id,
        "prompt": body.prompt,
        "model": model,
        "ratio": ratio,
        "duration": duration,
        "seed": body.seed,
    }


def request_hash(normalised: dict[str, object]) -> str:
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(gen: Generation) -> str:
    raw = f"{gen.created_at.isoformat()}|{gen.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, gid = raw.split("|", 1)
        at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc
    if at.tzinfo is None or not _ID.match(gid):
        raise _bad_cursor()
    return at, gid


def _bad_cursor() -> Unprocessable:
    return Unprocessable("The cursor is not one this API returned.", code="invalid_cursor")


class Generations:
    def __init__(
        self,
        settings: GatewaySettings,
        uow: Callable[[], UnitOfWork],
        channel: str,
    ) -> None:
        self._settings = settings
        self._uow = uow
        self._channel = channel

    async def request(
        self, user_id: str, body: GenerateRequest, idempotency_key: str | None
    ) -> Accepted:
        wanted = normalise(body)
        digest = request_hash(wanted)
        cfg = self._settings
        async with self._uow() as uow:
            s = uow.session
            await admission.lock_user(s, user_id)
            now = datetime.now(UTC)
            since = now - timedelta(seconds=cfg.generate_rate_window_s)
            found = await admission.precheck(s, user_id, body.project_id, idempotency_key, since)
            if idempotency_key is not None and found.key_created_at is not None:
                if found.key_created_at >= now - timedelta(seconds=cfg.idempotency_ttl_s):
                    if found.request_hash != digest:
                        raise IdempotencyConflict(
                            "This Idempotency-Key was used with a different request.",
                            details={"generationId": found.earlier_id},
                        )
                    earlier = GenerateResponse(
                        generation_id=str(found.earlier_id), status=Status.queued
                    )
                    return Accepted(earlier, replayed=True)
                await admission.forget_key(s, user_id, idempotency_key)  # expired
            if found.project_id is None or found.image_key is None or not found.content_type:
                raise NotFound("No such project.", details={"projectId": body.project_id})
            self._check_limits(found, since)
            gid = str(uuid.uuid4())
            await admission.insert(
                s,
                generation_id=gid,
                user_id=user_id,
                request=wanted,
                metadata={**wanted, "requestedAt": now.isoformat()},
                image_key=found.image_key,
                content_type=found.content_type,
                key=idempotency_key,
                request_hash=digest,
                now=now,
            )
            uow.emit(
                GenerationRequested(
                    generation_id=gid,
                    project_id=found.project_id,
                    user_id=user_id,
                    image_key=found.image_key,
                    image_content_type=found.content_type,
                    prompt=body.prompt,
                    model=str(wanted["model"]),
                    ratio=str(wanted["ratio"]),
                    duration=int(str(wanted["duration"])),
                    seed=body.seed,
                    requested_at=now,
                )
            )
            await uow.commit()
        return Accepted(GenerateResponse(generation_id=gid, status=Status.queued), replayed=False)

    def _check_limits(self, found: admission.Precheck, since: datetime) -> None:
        cfg = self._settings
        if found.in_flight >= cfg.max_in_flight_per_user:
            raise RateLimited(
                f"You have {found.in_flight} generations in progress; wait for one to finish.",
                code="too_many_in_flight",
                retry_after_s=cfg.in_flight_retry_after_s,
            )
        if found.recent >= cfg.generate_rate_limit and found.oldest is not None:
            wait = (found.oldest - since).total_seconds()
            raise RateLimited(
                f"At most {cfg.generate_rate_limit} generations per "
                f"{cfg.generate_rate_window_s} s.",
                retry_after_s=max(1, math.ceil(wait)),
            )

    async def get(self, s: AsyncSession, user_id: str, generation_id: str) -> Generation:
        """The caller's generation (404 when unknown or another user's)."""
        check_id(generation_id)
        gen = (
            await s.exec(
                select(Generation).where(
                    Generation.id == generation_id, Generation.user_id == user_id
                )
            )
        ).first()
        if gen is None:
            raise NotFound("No such generation.")
        return gen

    async def page(
        self,
        s: AsyncSession,
        user_id: str,
        *,
        project_id: str | None,
        status: Status | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Generation], str | None]:
        query = select(Generation).where(Generation.user_id == user_id)
        if project_id is not None:
            query = query.where(Generation.project_id == project_id)
        if status is not None:
            query = query.where(Generation.status == status.value)
        if cursor:
            at, gid = decode_cursor(cursor)
            query = query.where(tuple_(Generation.created_at, Generation.id) < tuple_(at, gid))
        query = query.order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
        rows = list((await s.exec(query.limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]) if more and rows else None

    async def cancel(self, user_id: str, generation_id: str) -> Generation:
        check_id(generation_id)
        async with self._uow() as uow:
            s = uow.session
            gen = (
                await s.exec(
                    select(Generation)
                    .where(Generation.id == generation_id, Generation.user_id == user_id)
                    .with_for_update()
                )
            ).first()
            if gen is None:
                raise NotFound("No such generation.")
            if Status(gen.status).terminal:
                raise AlreadyFinished(
                    f"The generation is already {gen.status}.", details={"status": gen.status}
                )
            if gen.cancel_requested_at is None:
                now = datetime.now(UTC)
                gen.cancel_requested_at = now
                gen.updated_at = now
                gen.version += 1
                s.add(gen)
                uow.emit(
                    GenerationCancelRequested(
                        generation_id=gen.id, user_id=user_id, requested_at=now
                    )
                )
                await notify_change(s, self._channel, gen.id)
            await uow.commit()  # also when already requested: keeps ``gen`` loaded
        return gen
