"""Runway's task endpoints: create (image to video), retrieve, cancel/delete.

Task bodies match the SDK's `TaskRetrieveResponse` variants exactly:
PENDING/THROTTLED `{id, createdAt, status, estimatedCost}`, RUNNING adds `progress`,
SUCCEEDED `{..., cost, output}`, FAILED `{..., cost, failure, failureCode}`,
CANCELLED `{..., cost}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from runway_sim.assets import AssetError
from runway_sim.auth import require_api_access
from runway_sim.errors import ApiError, iso, issue, validation_error
from runway_sim.generation import load_image, start_generation
from runway_sim.outputs import signed_url
from runway_sim.params import CreateRequest, insufficient_credits, validate_create
from runway_sim.state import SimState, get_state
from runway_sim.tasks import Status, Task


def task_view(task: Task, now: float, output: list[str]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": task.id,
        "createdAt": iso(task.created_wall),
        "status": task.status.value,
    }
    if task.status in (Status.PENDING, Status.THROTTLED, Status.RUNNING):
        view["estimatedCost"] = {"credits": task.credits}
        if task.status is Status.RUNNING:
            view["progress"] = task.progress(now)
        return view
    view["cost"] = {"credits": task.cost or 0}
    if task.status is Status.SUCCEEDED:
        view["output"] = output
    elif task.status is Status.FAILED and task.failure is not None:
        view["failure"] = task.failure.message
        view["failureCode"] = task.failure.code
    return view


async def _check_assets_now(state: SimState, request: CreateRequest) -> bytes | None:
    """With `asset_errors_at_create`, a bad prompt image is a 400 instead of a failed task."""
    if not state.scenario.asset_errors_at_create:
        return None
    try:
        return await load_image(state, request.first_image)
    except AssetError as exc:
        raise validation_error([issue(["promptImage"], str(exc))]) from exc


async def create_image_to_video(request: Request) -> dict[str, str]:
    state = get_state(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Request body must be valid JSON.") from exc
    settings = state.settings
    create = validate_create(
        body, max_data_uri_bytes=settings.max_data_uri_bytes, allow_http=settings.allow_http_urls
    )
    for index, ref in enumerate(create.images):
        if ref.kind == "upload" and state.uploads.lookup(ref.uri) is None:
            path: list[str | int] = (
                ["promptImage"]
                if isinstance(body.get("promptImage"), str)
                else ["promptImage", index, "uri"]
            )
            raise validation_error([issue(path, "Invalid upload URI: unknown or expired.")])
    now = state.clock()
    limits = state.scenario.limits(create.model)
    if (
        limits.max_daily is not None
        and state.daily_generations(create.model, now) >= limits.max_daily
    ):
        raise ApiError(
            429,
            f"You have reached the daily generation limit for {create.model} "
            f"({limits.max_daily}). Try again tomorrow.",
        )
    if state.credit_balance < create.credits:
        raise insufficient_credits()
    first_image = await _check_assets_now(state, create)
    task = start_generation(state, create, first_image)
    return {"id": task.id}


async def retrieve_task(task_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    now = state.clock()
    task = state.engine.get(task_id, now)
    if task is None:
        raise ApiError(404, "Task not found.")
    output: list[str] = []
    if task.status is Status.SUCCEEDED:
        url = signed_url(
            state.settings.signing_secret,
            state.base_url(request),
            task.id,
            0,
            state.scenario.output_url_ttl_s,
        )
        output = [url]
    return task_view(task, now, output)


async def delete_task(task_id: str, request: Request) -> Response:
    state = get_state(request)
    if not state.engine.cancel_or_delete(task_id, state.clock()):
        raise ApiError(404, "Task not found.")
    return Response(status_code=204)


def build_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_access)])
    router.add_api_route("/v1/image_to_video", create_image_to_video, methods=["POST"])
    router.add_api_route("/v1/tasks/{task_id}", retrieve_task, methods=["GET"])
    router.add_api_route("/v1/tasks/{task_id}", delete_task, methods=["DELETE"], status_code=204)
    return router
