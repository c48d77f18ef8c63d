"""Generations: request, status, list, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from vidgen_common.clock import utc_now
from vidgen_gateway.api.deps import (
    DepsDep,
    GenerationsDep,
    QueueDep,
    SessionDep,
    SettingsDep,
    UserDep,
)
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.schemas import (
    GenerateRequest,
    GenerateResponse,
    GenerationPage,
    GenerationView,
    ListQuery,
)
from vidgen_gateway.views import to_view

router = APIRouter(prefix="/api/videos", tags=["videos"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key and body returns the same generation",
    ),
]


@router.post(
    "/generate",
    status_code=202,
    response_model=GenerateResponse,
    summary="Request a video from a project's image and a prompt",
    responses={
        202: {
            "description": "Accepted (also for a retry with the same Idempotency-Key and body)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answers an earlier request with this key",
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(400, 401, 402, 404, 409, 422, 429),
    },
)
async def generate(
    body: GenerateRequest,
    user: UserDep,
    generations: GenerationsDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> GenerateResponse:
    """Create the generation (``queued``) and hand it to the pipeline; answers at once.

    Its estimated cost (``estimatedCostCredits``) is reserved against the caller's daily and
    monthly credit budgets; 402 ``budget_exceeded`` when it does not fit (nothing is created)."""
    accepted = await generations.request(user, body, idempotency_key)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return accepted.response


@router.get(
    "/status/{generation_id}",
    response_model=GenerationView,
    summary="A generation's current state",
    responses=error_responses(401, 404),
)
async def status(
    generation_id: str,
    user: UserDep,
    generations: GenerationsDep,
    session: SessionDep,
    deps: DepsDep,
    queue: QueueDep,
) -> GenerationView:
    """While unfinished: ``queuePosition`` and ``queueReason`` (queued), and the estimated
    start and completion (a median and a 90th percentile bound)."""
    gen = await generations.get(session, user, generation_id)
    estimate = await queue.estimate(session, gen, utc_now())
    return to_view(gen, deps.storage.presigned_get, estimate)


@router.get(
    "",
    response_model=GenerationPage,
    summary="The caller's generations, newest first",
    responses=error_responses(401, 422),
)
async def list_generations(
    user: UserDep,
    generations: GenerationsDep,
    session: SessionDep,
    deps: DepsDep,
    settings: SettingsDep,
    queue: QueueDep,
    query: Annotated[ListQuery, Query()],
) -> GenerationPage:
    rows, next_cursor = await generations.page(
        session,
        user,
        project_id=query.project_id or None,
        status=query.status or None,
        cursor=query.cursor or None,
        limit=min(query.limit, settings.list_page_max),
    )
    presign = deps.storage.presigned_get
    found = await queue.estimates(session, rows, utc_now())
    return GenerationPage(
        items=[to_view(g, presign, found[g.id]) for g in rows], next_cursor=next_cursor
    )


@router.post(
    "/{generation_id}/cancel",
    status_code=202,
    response_model=GenerationView,
    summary="Ask for a generation to be cancelled",
    responses=error_responses(401, 404, 409),
)
async def cancel(
    generation_id: str, user: UserDep, generations: GenerationsDep, deps: DepsDep
) -> GenerationView:
    """Accepted while the generation is unfinished (its status becomes ``cancelled`` once the
    pipeline has stopped it); 409 once it has finished."""
    gen = await generations.cancel(user, generation_id)
    return to_view(gen, deps.storage.presigned_get)
