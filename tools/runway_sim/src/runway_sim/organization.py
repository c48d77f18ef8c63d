"""`GET /v1/organization`: tier limits, credit balance and daily usage (SDK's
`OrganizationRetrieveResponse`). Limits and balance come from `Scenario.org`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from runway_sim.auth import require_api_access
from runway_sim.state import get_state


async def retrieve_organization(request: Request) -> dict[str, Any]:
    state = get_state(request)
    now = state.clock()
    state.engine.advance(now)
    org = state.scenario.org
    return {
        "creditBalance": state.credit_balance,
        "tier": {
            "maxMonthlyCreditSpend": org.max_monthly_credit_spend,
            "models": {
                name: {
                    "maxConcurrentGenerations": limits.max_concurrent,
                    "maxDailyGenerations": limits.max_daily,
                }
                for name, limits in org.models.items()
            },
        },
        "usage": {
            "models": {
                name: {"dailyGenerations": state.daily_generations(name, now)}
                for name in org.models
            }
        },
    }


def build_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_access)])
    router.add_api_route("/v1/organization", retrieve_organization, methods=["GET"])
    return router
