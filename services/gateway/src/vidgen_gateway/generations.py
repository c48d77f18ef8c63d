"""Requesting, reading, listing and cancelling generations (the API's use cases).

``request`` writes the generation (``queued``) and ``GenerationRequested`` in one transaction
(the outbox relays the event), after the idempotency, ownership and per-user limit checks,
all in one statement (``store.accept``), and reserves its estimated cost against the caller's
daily and monthly budgets in that same transaction (``store.reserve``; 402
``budget_exceeded`` when it does not fit; see :mod:`vidgen_gateway.ledger`). A per-user
advisory lock, taken first in the accepting statement, serialises one user's requests, so two
concurrent retries with one
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
from datetime import date, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_common.events import GenerationCancelRequested, GenerationRequested
from vidgen_common.uow import UnitOfWork
from vidgen_common.webhook_targets import AllowList, TargetRefused, check_events, check_url
from vidgen_gateway import ledger, store
from vidgen_gateway.errors import (
    AlreadyFinished,
    BudgetExceeded,
    IdempotencyConflict,
    NotFound,
    RateLimited,
    Unprocessable,
)
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.runway_models import (
    DEFAULT_DURATION,
    DEFAULT_MODEL,
    DEFAULT_RATIO,
    MODELS,
    default_duration,
    problems,
)
from vidgen_gateway.schemas import GenerateRequest, GenerateResponse
from vidgen_gateway.settings import GatewaySettings

_PROJECTS_CACHED = 10_000  # projects whose image one process keeps (the oldest go first)
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
    duration = body.duration or (default_duration(rule) if rule else DEFAULT_DURATION)
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
        # only when given: the hashes of requests without a webhook stay what they were
        **({"webhookUrl": body.webhook_url} if body.webhook_url is not None else {}),
        **({"webhookEvents": body.webhook_events} if body.webhook_events is not None else {}),
        # accept_generation (migration 0004) reads the row's priority from here
        **({"priority": body.priority} if body.priority is not None else {}),
    }


def check_webhook(body: GenerateRequest, settings: GatewaySettings) -> list[str] | None:
    """The webhook's event types; 422 naming the field when the URL or an event is refused
    (the notifier's own policy, :mod:`vidgen_common.webhook_targets`)."""
    if body.webhook_url is None:
        if body.webhook_events is not None:
            raise Unprocessable(
                "webhookEvents needs a webhookUrl.", details={"field": "webhookEvents"}
            )
        return None
    try:
        check_url(
            body.webhook_url,
            production=settings.env == "production",
            allowed=AllowList.parse(settings.webhook_allowed_targets),
        )
    except TargetRefused as exc:
        raise Unprocessable(
            f"webhookUrl: {exc}", code="invalid_webhook_url", details={"field": "webhookUrl"}
        ) from exc
    try:
        return check_events(body.webhook_events)
    except TargetRefused as exc:
        raise Unprocessable(
            f"webhookEvents: {exc}",
            code="invalid_webhook_events",
            details={"field": "webhookEvents"},
        ) from exc


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


def budgets_of(
    cfg: GatewaySettings, has_override: bool, daily: int | None, monthly: int | None
) -> dict[str, int | None]:
    """The budgets in force: the administrator's override if there is one, else the defaults."""
    if has_override:
        return {ledger.DAY: daily, ledger.MONTH: monthly}
    return {ledger.DAY: cfg.budget_daily_credits, ledger.MONTH: cfg.budget_monthly_credits}


def standings_of(
    cfg: GatewaySettings,
    found: store.Reservation | store.UsageRow,
    periods: dict[str, date],
) -> list[ledger.Standing]:
    """The day's and the month's figures (day first)."""
    budgets = budgets_of(cfg, found.has_budget, found.daily_credits, found.monthly_credits)
    return [
        ledger.Standing(
            ledger.DAY,
            periods[ledger.DAY],
            budgets[ledger.DAY],
            found.day_spent,
            found.day_reserved,
        ),
        ledger.Standing(
            ledger.MONTH,
            periods[ledger.MONTH],
            budgets[ledger.MONTH],
            found.month_spent,
            found.month_reserved,
        ),
    ]


def over_budget(over: ledger.Standing, estimate: int) -> BudgetExceeded:
    word = "daily" if over.period == ledger.DAY else "monthly"
    return BudgetExceeded(
        f"This generation is estimated at {estimate} credits, more than the {over.remaining} "
        f"left of your {word} budget of {over.budget} credits "
        f"(it resets at {over.resets_at.isoformat()}).",
        details={
            "period": over.period,
            "budgetCredits": over.budget,
            "spentCredits": over.spent,
            "reservedCredits": over.reserved,
            "remainingCredits": over.remaining,
            "estimatedCostCredits": estimate,
            "resetsAt": over.resets_at.isoformat(),
        },
    )


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
        self._projects: dict[tuple[str, str], store.ProjectImage] = {}

    async def request(
        self, user_id: str, body: GenerateRequest, idempotency_key: str | None
    ) -> Accepted:
        wanted = normalise(body)
        webhook_events = check_webhook(body, self._settings)
        digest = request_hash(wanted)
        cfg = self._settings
        async with self._uow() as uow:
            s = uow.session
            image = self._projects.get((user_id, body.project_id))
            if image is None:
                image = await store.project_image(s, user_id, body.project_id)
                if image is not None:
                    self._remember(user_id, body.project_id, image)
            now = utc_now()
            since = now - timedelta(seconds=cfg.generate_rate_window_s)
            gid = str(uuid.uuid4())
            found = await store.accept(
                s,
                generation_id=gid,
                user_id=user_id,
                request=wanted,
                metadata={**wanted, "requestedAt": now.isoformat()},
                image_key=image.image_key if image else None,
                key=idempotency_key,
                request_hash=digest,
                key_valid_after=now - timedelta(seconds=cfg.idempotency_ttl_s),
                since=since,
                max_in_flight=cfg.max_in_flight_per_user,
                rate_limit=cfg.generate_rate_limit,
                event=None
                if image is None
                else uow.outbox_row(
                    GenerationRequested(
                        generation_id=gid,
                        project_id=body.project_id,
                        user_id=user_id,
                        image_key=image.image_key,
                        image_content_type=image.content_type,
                        prompt=body.prompt,
                        model=str(wanted["model"]),
                        ratio=str(wanted["ratio"]),
                        duration=int(str(wanted["duration"])),
                        seed=body.seed,
                        requested_at=now,
                        webhook_url=body.webhook_url,
                        webhook_events=webhook_events,
                        priority=body.priority or "normal",
                    )
                ),
                now=now,
            )
            estimate = ledger.estimate(str(wanted["model"]), int(str(wanted["duration"])))
            if found.inserted:
                periods = ledger.period_starts(now)
                booked = await store.reserve(
                    s,
                    generation_id=gid,
                    user_id=user_id,
                    estimate=estimate,
                    periods=periods,
                    default_budgets={
                        ledger.DAY: cfg.budget_daily_credits,
                        ledger.MONTH: cfg.budget_monthly_credits,
                    },
                )
                if not booked.reserved:  # raising rolls the whole transaction back
                    standings = standings_of(cfg, booked, periods)
                    raise over_budget(
                        ledger.first_exceeded(standings, estimate) or standings[0], estimate
                    )
                await uow.commit()
                response = GenerateResponse(
                    generation_id=gid, status=Status.queued, estimated_cost_credits=estimate
                )
                return Accepted(response, replayed=False)
            # nothing written: the same decisions as the statement's, to say why
            valid_after = now - timedelta(seconds=cfg.idempotency_ttl_s)
            if found.key_created_at is not None and found.key_created_at >= valid_after:
                if found.request_hash != digest:
                    raise IdempotencyConflict(
                        "This Idempotency-Key was used with a different request.",
                        details={"generationId": found.earlier_id},
                    )
                earlier = GenerateResponse(  # the same request, so the same estimate
                    generation_id=str(found.earlier_id),
                    status=Status.queued,
                    estimated_cost_credits=estimate,
                )
                return Accepted(earlier, replayed=True)
            if found.project_id is None or found.image_key is None or not found.content_type:
                raise NotFound("No such project.", details={"projectId": body.project_id})
            self._check_limits(found, since)
            raise RuntimeError(  # a project's image never changes, so this cannot happen
                f"project {body.project_id}: its image is not {image}"
            )

    def _remember(self, user_id: str, project_id: str, image: store.ProjectImage) -> None:
        """Keep a project's image (immutable once uploaded) for this user's next requests;
        the statement still checks it is the user's project with this image."""
        if len(self._projects) >= _PROJECTS_CACHED:
            self._projects.pop(next(iter(self._projects)))
        self._projects[(user_id, project_id)] = image

    def _check_limits(self, found: store.Precheck, since: datetime) -> None:
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
        gen = await store.own_generation(s, user_id, generation_id)
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
        rows = await store.generations_page(
            s,
            user_id,
            project_id=project_id,
            status=status.value if status is not None else None,
            after=decode_cursor(cursor) if cursor else None,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]) if more and rows else None

    async def cancel(self, user_id: str, generation_id: str) -> Generation:
        check_id(generation_id)
        async with self._uow() as uow:
            s = uow.session
            gen = await store.own_generation(s, user_id, generation_id, lock=True)
            if gen is None:
                raise NotFound("No such generation.")
            if Status(gen.status).terminal:
                raise AlreadyFinished(
                    f"The generation is already {gen.status}.", details={"status": gen.status}
                )
            if gen.cancel_requested_at is None:
                now = utc_now()
                gen.cancel_requested_at = now
                gen.updated_at = now
                gen.version += 1
                s.add(gen)
                uow.emit(
                    GenerationCancelRequested(
                        generation_id=gen.id, user_id=user_id, requested_at=now
                    )
                )
                await store.notify_change(s, self._channel, gen.id)
            await uow.commit()  # also when already requested: keeps ``gen`` loaded
        return gen
