"""Holds: generations that wait for Runway's daily cap or for the organisation's credits.

Neither is a failure. Runway refuses a create over the daily cap (a 429 naming it:
``runway_daily_limit``) or over the credit balance (a 400 "You do not have enough credits",
:func:`is_out_of_credits`); in both cases no task was made, so the row goes back to
``pending`` (:mod:`vidgen_generator.creator`) and waits, and so do the others it concerns:

- **the daily cap** is per model, over a rolling 24 hours: the model is held until 24 h after
  the oldest task this generator submitted for it in the last 24 h, else for
  ``daily_cap_recheck_s`` (:func:`vidgen_generator.store.daily_cap_until`). Every pending row
  of the model carries ``wait_reason = 'daily_cap_reached'`` and ``wait_until``, so every
  replica holds it (the claim passes read the held rows, :func:`vidgen_generator.store.held`).
  With ``budget_from_organization``, a model whose ``usage.models[m].dailyGenerations``
  reached ``tier.models[m].maxDailyGenerations`` is held before any create is tried.
- **the credits**: with ``watch_organization_credits``, ``creditBalance`` is read with the
  rest of ``/v1/organization`` (every ``organization_refresh_s``, and right after a create was
  refused for credits). A row is claimed only if its cost (``estimated_cost_credits``, else the
  catalog's price) fits in the balance less the estimated cost of the creates claimed since
  the balance was read; a row that does not fit waits with ``organization_out_of_credits``.

Each claim pass (:meth:`Holds.before_claim`, the claim, :meth:`Holds.after_claim`, in one
transaction) first sets the rows' reasons in one ``UPDATE … RETURNING``
(:func:`vidgen_generator.store.sync_holds`) that reads only the held rows and the rows of
capped models (every pending row only while the credits are short) and writes only the rows
whose reason changes; rows that stop fitting as the pass claims others are held after it.
Each change is one ``GenerationWaiting`` in the same transaction: ``daily_cap_reached`` (with
``until``) or ``organization_out_of_credits`` when a row starts being held,
``waiting_for_capacity`` when it is released but not claimed in that pass. A row that only
waits for a busy slot, or that is claimed as it is released, is told nothing
(``TaskSubmitted`` ends the wait).

``vidgen_generator_waiting{reason}`` counts the rows held per reason; a WARNING is logged
when a model reaches its cap or the credits run short, and when that ends (once per change,
per replica).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.events import GenerationWaiting
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.runway import Organization
from vidgen_generator.settings import GeneratorSettings
from vidgen_runway.catalog import MODELS
from vidgen_runway.verdicts import Classified

log = logging.getLogger(__name__)

DAILY_LIMIT = "runway_daily_limit"
PRICES = {name: facts.credits_per_second for name, facts in MODELS.items()}
MAX_COST = max(facts.credits(max(facts.durations)) for facts in MODELS.values())
"""No row costs more: credits left above this hold nothing back."""


def is_out_of_credits(c: Classified) -> bool:
    """Runway refused the create for the organisation's credit balance (a 400 whose message
    says so; Runway has no error code for it)."""
    message = c.message.lower()
    return (
        c.status == 400
        and "credits" in message
        and ("enough" in message or "insufficient" in message)
    )


def cost(row: Submission) -> int | None:
    """The credits a row's task should cost (None: unknown, never held for credits)."""
    if row.estimated_cost_credits is not None:
        return row.estimated_cost_credits
    facts = MODELS.get(row.model)
    return None if facts is None else facts.credits(row.duration)


def waiting(change: store.WaitChange, now: datetime) -> GenerationWaiting:
    return GenerationWaiting(
        generation_id=change.generation_id,
        user_id=change.user_id,
        model=change.model,
        reason=change.reason,
        until=change.until,
        observed_at=now,
    )


@dataclass
class Pass:
    """What one claim pass may claim: the models at their daily cap and the credits left."""

    caps: dict[str, datetime]
    available: int | None
    counts: dict[str, int] = field(default_factory=dict)
    changes: list[store.WaitChange] = field(default_factory=list)
    spent: int = 0
    unfit: list[Submission] = field(default_factory=list)

    def fits(self, row: Submission) -> bool:
        """Whether ``row``'s cost fits in the credits left; if so it is counted as spent,
        else the row is held (by :meth:`Holds.after_claim`)."""
        price = cost(row)
        if self.available is not None and price is not None:
            if price > self.available - self.spent:
                self.unfit.append(row)
                return False
            self.spent += price
        return True


class Holds:
    """The credit balance as last read, the daily caps Runway's usage told, and what was
    logged (per replica); the rows' reasons are in the database."""

    def __init__(self, settings: GeneratorSettings, metrics: GeneratorMetrics) -> None:
        self._s = settings
        self._metrics = metrics
        self._balance: int | None = None
        self._spent = 0  # estimated cost of the creates claimed since the balance was read
        self._usage_caps: dict[str, datetime] = {}
        self._capped: set[str] = set()  # logged as capped
        self._short = False  # logged as short of credits

    def refused_for_credits(self, price: int | None) -> None:
        """A create was refused for credits: the balance is below its price."""
        if price is not None and (self._balance is None or self._balance - self._spent >= price):
            self._balance, self._spent = price - 1, 0

    async def before_claim(
        self,
        session: AsyncSession,
        now: datetime,
        organization: Organization | None,
        fresh: bool,
    ) -> Pass:
        """The caps and credits of this pass (``fresh``: ``organization`` was just read),
        with every pending row's reason set accordingly (the events are emitted by
        :meth:`after_claim`)."""
        s = self._s
        if fresh and organization is not None:
            if s.watch_organization_credits:
                self._balance, self._spent = organization.credit_balance, 0
            if s.budget_from_organization:
                capped = organization.daily_capped()
                self._usage_caps = {
                    m: self._usage_caps.get(m)
                    or await store.daily_cap_until(session, m, now, s.daily_cap_recheck_s)
                    for m in sorted(capped)
                }
        self._usage_caps = {m: u for m, u in self._usage_caps.items() if u > now}
        held = await store.held(session, now)
        caps = {**self._usage_caps, **held.caps}
        available = None
        if s.watch_organization_credits and self._balance is not None:
            available = self._balance - self._spent
        short = available is not None and available < MAX_COST
        changes = await store.sync_holds(
            session, now, caps=caps, available=available, prices=PRICES, every_row=short
        )
        counts = dict(held.counts)
        for change in changes:
            if change.was in store.HELD:
                counts[change.was] = counts.get(change.was, 0) - 1
            if change.reason in store.HELD:
                counts[change.reason] = counts.get(change.reason, 0) + 1
        return Pass(caps, available, counts, changes)

    async def after_claim(
        self, uow: UnitOfWork, now: datetime, p: Pass, picked: set[tuple[str, int]]
    ) -> None:
        """Hold the rows that did not fit in the credits left as the pass claimed others, and
        emit this pass's changes of reason (not ``waiting_for_capacity`` for a row claimed
        as it was released: ``TaskSubmitted`` tells that)."""
        self._spent += p.spent
        changes = {(c.generation_id, c.attempt): c for c in p.changes}
        if p.unfit:
            await store.hold_for_credits(uow.session, now, p.unfit)
        for row in p.unfit:
            key = (row.generation_id, row.attempt)
            before = changes[key].was if key in changes else row.wait_reason
            changes[key] = store.WaitChange(
                row.generation_id, row.attempt, row.user_id, row.model, before,
                "organization_out_of_credits", None,
            )  # fmt: skip
            p.counts["organization_out_of_credits"] = (
                p.counts.get("organization_out_of_credits", 0) + 1
            )
        for key, change in changes.items():
            if change.reason == change.was:
                continue  # only its until moved
            if change.reason == "waiting_for_capacity" and key in picked:
                continue
            uow.emit(waiting(change, now))
        for reason in store.HELD:
            self._metrics.waiting.labels(reason).set(max(0, p.counts.get(reason, 0)))
        available = None if p.available is None else p.available - p.spent
        self._log(p, p.counts.get("organization_out_of_credits", 0), available)

    def _log(self, p: Pass, short_n: int, available: int | None) -> None:
        for model in sorted(set(p.caps) - self._capped):
            log.warning(
                "Runway's daily generation cap for %s is reached: its generations wait until "
                "%s (rolling 24 hours)",
                model,
                p.caps[model].isoformat(),
            )
        for model in sorted(self._capped - set(p.caps)):
            log.warning("Runway's daily cap for %s should let tasks through again", model)
        self._capped = set(p.caps)
        if short_n and not self._short:
            log.warning(
                "the organisation's Runway credits do not cover the waiting generations "
                "(%s credits left): %d held until credits are added",
                available,
                short_n,
            )
        elif self._short and not short_n:
            log.warning("the organisation's Runway credits cover the waiting generations again")
        self._short = bool(short_n)
