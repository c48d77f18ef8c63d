"""The credit ledger's use cases: a user's usage (``/api/usage``, ``/api/admin/usage``) and the
budgets an administrator sets (``/api/admin/budgets``). The rules are
:mod:`vidgen_gateway.ledger`'s; the reservation and settlement themselves happen in
:mod:`vidgen_gateway.generations` and :mod:`vidgen_gateway.handlers`.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_gateway import ledger, store
from vidgen_gateway.generations import budgets_of, standings_of
from vidgen_gateway.schemas import (
    BudgetResponse,
    DayUsage,
    ModelUsage,
    PeriodUsage,
    UsageResponse,
)
from vidgen_gateway.settings import GatewaySettings


async def usage(s: AsyncSession, cfg: GatewaySettings, user_id: str) -> UsageResponse:
    """``user_id``'s figures for the current UTC day and month (zeros for an unknown user)."""
    now = utc_now()
    periods = ledger.period_starts(now)
    row = await store.usage(s, user_id, periods)
    month_start = datetime.combine(periods[ledger.MONTH], time(), tzinfo=UTC)
    breakdown = await store.usage_breakdown(s, user_id, month_start)
    by_model: dict[str, ModelUsage] = {}
    by_day: dict[object, DayUsage] = {}
    for b in breakdown:
        m = by_model.setdefault(
            b.model, ModelUsage(model=b.model, generations=0, spent_credits=0, reserved_credits=0)
        )
        d = by_day.setdefault(
            b.day, DayUsage(day=b.day, generations=0, spent_credits=0, reserved_credits=0)
        )
        for agg in (m, d):
            agg.generations += b.generations
            agg.spent_credits += b.spent
            agg.reserved_credits += b.reserved
    return UsageResponse(
        user_id=user_id,
        budget_source="override" if row.has_budget else "default",
        periods=[
            PeriodUsage(
                period="day" if st.period == ledger.DAY else "month",
                start=st.start,
                resets_at=st.resets_at,
                budget_credits=st.budget,
                spent_credits=st.spent,
                reserved_credits=st.reserved,
                remaining_credits=st.remaining,
            )
            for st in standings_of(cfg, row, periods)
        ],
        by_model=sorted(by_model.values(), key=lambda m: m.model),
        by_day=sorted(by_day.values(), key=lambda d: d.day),
    )


async def budget(s: AsyncSession, cfg: GatewaySettings, user_id: str) -> BudgetResponse:
    """The budgets in force for ``user_id`` and where they come from."""
    found = await store.budget(s, user_id)
    if found is None:
        budgets = budgets_of(cfg, False, None, None)
        return BudgetResponse(
            user_id=user_id,
            source="default",
            daily_credits=budgets[ledger.DAY],
            monthly_credits=budgets[ledger.MONTH],
        )
    return BudgetResponse(
        user_id=user_id,
        source="override",
        daily_credits=found.daily_credits,
        monthly_credits=found.monthly_credits,
        updated_by=found.updated_by,
        updated_at=found.updated_at,
    )


async def set_budget(
    s: AsyncSession, user_id: str, daily: int | None, monthly: int | None, by: str
) -> None:
    """Override ``user_id``'s budgets (committed here). Applies to the next request: what is
    reserved already stays reserved."""
    await store.put_budget(s, user_id, daily, monthly, by, utc_now())
    await s.commit()


async def clear_budget(s: AsyncSession, user_id: str) -> bool:
    """Back to the defaults; False when there was no override."""
    removed = await store.delete_budget(s, user_id)
    await s.commit()
    return removed
