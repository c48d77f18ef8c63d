"""The credit ledger's rules: what a generation is estimated to cost, which budget periods it
counts against, whether it fits, and what settling it books (pure functions).

- **Estimate**: the catalog's price (credits per second x duration,
  :func:`vidgen_runway.catalog.estimated_credits`), fixed at admission.
- **Periods**: a generation counts against the UTC day and the UTC month it was requested in,
  from admission to settlement (so a reservation and its settlement always touch the same
  rows, whenever the generation ends).
- **Budgets**: per user and period; an administrator's override (``credit_budgets``) or else
  the settings' defaults; ``None`` is unlimited.
- **Reservation**: at admission, ``spent + reserved + estimate`` must fit both budgets; the
  estimate is then reserved, in the transaction that writes the generation.
- **Settlement**: once the generation is terminal, its reservation is released and its real
  cost booked as spent: Runway's final cost when an event carried one, else 0 (failures and
  cancels before Runway charged are refunded). A final cost learnt after settlement (events
  arrive out of order) books the difference, so the ledger converges on the same figures
  whatever the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from vidgen_gateway.models import Generation, Status
from vidgen_runway.catalog import estimated_credits

DAY = "day"
MONTH = "month"
PERIODS = (DAY, MONTH)


def estimate(model: str, duration: int) -> int:
    """The credits a generation is expected to cost (0 for a model without a price)."""
    return estimated_credits(model, duration) or 0


def period_starts(at: datetime) -> dict[str, date]:
    """The UTC day and month ``at`` falls in (their first day)."""
    utc = at.astimezone(UTC)
    return {DAY: utc.date(), MONTH: utc.date().replace(day=1)}


def resets_at(period: str, start: date) -> datetime:
    """When the period that began on ``start`` ends (UTC midnight)."""
    if period == DAY:
        end = date.fromordinal(start.toordinal() + 1)
    elif start.month == 12:
        end = date(start.year + 1, 1, 1)
    else:
        end = date(start.year, start.month + 1, 1)
    return datetime.combine(end, time(), tzinfo=UTC)


@dataclass(frozen=True)
class Standing:
    """One period's figures for one user."""

    period: str
    start: date
    budget: int | None  # None: unlimited
    spent: int
    reserved: int

    @property
    def remaining(self) -> int | None:
        if self.budget is None:
            return None
        return max(0, self.budget - self.spent - self.reserved)

    def fits(self, credits: int) -> bool:
        return self.budget is None or self.spent + self.reserved + credits <= self.budget

    @property
    def resets_at(self) -> datetime:
        return resets_at(self.period, self.start)


def first_exceeded(standings: list[Standing], credits: int) -> Standing | None:
    """The first period (day before month) ``credits`` more would overrun, or None."""
    return next((s for s in standings if not s.fits(credits)), None)


@dataclass(frozen=True)
class Settlement:
    """What settling a generation books on its periods' rows."""

    release: int  # reserved credits given back
    spend: int  # credits added to spent (negative: a correction downwards)
    settled: int  # the generation's settled cost afterwards


def final_cost(gen: Generation) -> int:
    """The cost a terminal generation is settled at: Runway's final cost, else 0 (refunded)."""
    return (gen.cost_credits or 0) if gen.cost_final else 0


def settlement(gen: Generation) -> Settlement | None:
    """What to book now for ``gen``: None unless it is terminal and not settled at its cost."""
    if not Status(gen.status).terminal:
        return None
    cost = final_cost(gen)
    already = gen.settled_cost_credits
    if already == cost and gen.reserved_credits == 0:
        return None
    return Settlement(release=gen.reserved_credits, spend=cost - (already or 0), settled=cost)


def apply_settlement(gen: Generation, booked: Settlement) -> None:
    """Record on the row that ``booked`` was booked (in the same transaction). Pure."""
    gen.reserved_credits = 0
    gen.settled_cost_credits = booked.settled
