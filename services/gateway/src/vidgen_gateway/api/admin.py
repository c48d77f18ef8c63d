"""``/api/admin``: budgets and usage of any user, for tokens with the administrator role
(``VIDGEN_ADMIN_ROLE`` in the ``VIDGEN_JWT_ROLES_CLAIM`` claim; 403 for any other token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from vidgen_gateway import credits
from vidgen_gateway.api.deps import AdminDep, SessionDep, SettingsDep
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.errors import NotFound
from vidgen_gateway.schemas import BudgetRequest, BudgetResponse, UsageResponse

router = APIRouter(prefix="/api/admin", tags=["admin"])

USER_PATTERN = r"^[A-Za-z0-9._@:|+-]{1,128}$"  # a JWT subject (vidgen_common.devtokens)
UserPath = Annotated[str, Path(pattern=USER_PATTERN, description="The user id (JWT `sub`)")]


@router.get(
    "/budgets/{user_id}",
    response_model=BudgetResponse,
    summary="A user's budgets in force (an override, or the defaults)",
    responses=error_responses(401, 403, 422),
)
async def get_budget(
    user_id: UserPath, _: AdminDep, session: SessionDep, settings: SettingsDep
) -> BudgetResponse:
    return await credits.budget(session, settings, user_id)


@router.put(
    "/budgets/{user_id}",
    response_model=BudgetResponse,
    summary="Override a user's daily and monthly budgets (null: unlimited)",
    responses=error_responses(400, 401, 403, 422),
)
async def put_budget(
    user_id: UserPath,
    body: BudgetRequest,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> BudgetResponse:
    """Applies from the next generate request; credits reserved already stay reserved."""
    await credits.set_budget(session, user_id, body.daily_credits, body.monthly_credits, admin)
    return await credits.budget(session, settings, user_id)


@router.delete(
    "/budgets/{user_id}",
    status_code=204,
    summary="Remove a user's override: the default budgets apply again",
    responses=error_responses(401, 403, 404, 422),
)
async def delete_budget(user_id: UserPath, _: AdminDep, session: SessionDep) -> Response:
    if not await credits.clear_budget(session, user_id):
        raise NotFound("This user has no budget override.")
    return Response(status_code=204)


@router.get(
    "/usage",
    response_model=UsageResponse,
    summary="Any user's credits: spent, reserved and remaining per period, by model and day",
    responses=error_responses(401, 403, 422),
)
async def usage(
    user_id: Annotated[str, Query(alias="userId", pattern=USER_PATTERN)],
    _: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> UsageResponse:
    return await credits.usage(session, settings, user_id)
