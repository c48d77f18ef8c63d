"""``GET /api/usage``: the caller's own credit usage (nobody else's: there is no parameter)."""

from __future__ import annotations

from fastapi import APIRouter

from vidgen_gateway import credits
from vidgen_gateway.api.deps import SessionDep, SettingsDep, UserDep
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.schemas import UsageResponse

router = APIRouter(prefix="/api", tags=["usage"])


@router.get(
    "/usage",
    response_model=UsageResponse,
    summary="The caller's credits: spent, reserved and remaining per period, by model and day",
    responses=error_responses(401),
)
async def usage(user: UserDep, session: SessionDep, settings: SettingsDep) -> UsageResponse:
    """This UTC day and month against the caller's budgets; this month by model and by day.
    A generation counts in the day and month it was requested in: its estimate is reserved
    until it ends, then its real cost is spent (0 when Runway refunded it)."""
    return await credits.usage(session, settings, user)
