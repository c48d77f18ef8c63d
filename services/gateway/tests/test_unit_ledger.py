"""The ledger's pure rules: periods, fitting a budget, and settlements that converge whatever
the order of the events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from vidgen_gateway import ledger
from vidgen_gateway.models import Generation


def test_periods_are_utc_days_and_months_and_reset_at_midnight() -> None:
    late = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 01:30 UTC
    assert ledger.period_starts(late) == {"day": date(2027, 1, 1), "month": date(2027, 1, 1)}
    assert ledger.resets_at("day", date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert ledger.resets_at("month", date(2026, 12, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert ledger.resets_at("month", date(2026, 2, 1)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_budget_fits_up_to_its_last_credit_and_unlimited_always_fits() -> None:
    day = ledger.Standing("day", date(2026, 1, 1), 100, spent=50, reserved=25)
    assert day.fits(25)
    assert not day.fits(26)
    assert day.remaining == 25
    unlimited = ledger.Standing("month", date(2026, 1, 1), None, spent=10**9, reserved=0)
    assert unlimited.fits(10**9)
    assert unlimited.remaining is None
    assert ledger.first_exceeded([day, unlimited], 30) is day
    assert ledger.first_exceeded([day, unlimited], 25) is None


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _gen(**fields: Any) -> Generation:
    base: dict[str, Any] = {
        "id": "g", "user_id": "u", "project_id": "p", "prompt": "x", "model": "gen4_turbo",
        "ratio": "1280:720", "duration": 5, "image_key": "k", "image_content_type": "image/png",
        "created_at": T0, "updated_at": T0,
        "reserved_credits": 25, "estimated_cost_credits": 25,
    }  # fmt: skip
    return Generation(**(base | fields))


def test_settlement_releases_once_and_books_late_costs_as_a_difference() -> None:
    gen = _gen(status="generating")
    assert ledger.settlement(gen) is None  # not terminal: nothing to book
    gen.status = "failed"  # failed with no final cost: refunded
    first = ledger.settlement(gen)
    assert first == ledger.Settlement(release=25, spend=0, settled=0)
    ledger.apply_settlement(gen, first)
    assert ledger.settlement(gen) is None  # settled: a redelivery books nothing
    gen.cost_credits, gen.cost_final = 25, True  # VideoReady arrived after the failure
    late = ledger.settlement(gen)
    assert late == ledger.Settlement(release=0, spend=25, settled=25)
    ledger.apply_settlement(gen, late)
    assert ledger.settlement(gen) is None
