"""The admin API (`/_sim/...`, no auth: the simulator is for development and tests only).

- `GET  /_sim/health` → `{"ok": true}`
- `GET  /_sim/scenario` → the current scenario (JSON)
- `PUT  /_sim/scenario` → merge the JSON body into it (nested objects key by key); with
  `?replace=true` start from the defaults instead. 422 with details if invalid.
- `GET  /_sim/counters` → see `Counters`
- `POST /_sim/reset` → forget tasks, uploads, counters and daily usage; restore the credit
  balance and the startup scenario (`?keep_scenario=true` keeps the current one)
- `GET  /_sim/tasks` → every task created since the last reset, deleted ones included: id,
  times, status, model, prompt, credits charged at creation, final cost, failure code, and the
  injected faults that touched it (what a test can hold a client's records against)
- `GET  /_sim/tasks/{id}` → a task's internal timeline (drawn durations, history)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from runway_sim.errors import ApiError, iso
from runway_sim.scenario import Scenario, merged
from runway_sim.state import get_state
from runway_sim.tasks import Task


async def health() -> dict[str, bool]:
    return {"ok": True}


async def get_scenario(request: Request) -> dict[str, Any]:
    return get_state(request).scenario.model_dump(mode="json")


async def put_scenario(request: Request, replace: bool = False) -> Response:
    state = get_state(request)
    try:
        patch = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Body must be a JSON object.") from exc
    if not isinstance(patch, dict):
        raise ApiError(400, "Body must be a JSON object.")
    try:
        scenario = Scenario.model_validate(patch) if replace else merged(state.scenario, patch)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return JSONResponse({"error": "Invalid scenario", "issues": errors}, status_code=422)
    state.set_scenario(scenario)
    return JSONResponse(scenario.model_dump(mode="json"))


async def counters(request: Request) -> dict[str, Any]:
    state = get_state(request)
    return state.counters.snapshot(state.live_statuses())


async def reset(request: Request, keep_scenario: bool = False) -> dict[str, bool]:
    get_state(request).reset(keep_scenario=keep_scenario)
    return {"ok": True}


async def task_timeline(task_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    now = state.clock()
    task = state.engine.get(task_id, now)
    if task is None:
        raise ApiError(404, "Task not found.")
    return {
        "id": task.id,
        "model": task.model,
        "status": task.status.value,
        "queue_s": task.queue_s,
        "run_s": task.run_s,
        "planned_failure": task.planned_failure.code if task.planned_failure else None,
        "asset": task.asset,
        "asset_error": task.asset_error,
        "created_at_s": task.created_at,  # the simulator's monotonic clock
        "age_s": now - task.created_at,
        "history": [{"at_s": at - task.created_at, "status": s.value} for at, s in task.history],
    }


def task_summary(task: Task) -> dict[str, Any]:
    """One task as `GET /_sim/tasks` lists it (wall-clock times in Runway's format)."""

    def wall(at: float | None) -> str | None:
        if at is None:
            return None
        return iso(task.created_wall + timedelta(seconds=at - task.created_at))

    return {
        "id": task.id,
        "model": task.model,
        "status": task.status.value,
        "prompt_text": task.request.prompt_text,
        "created_at": iso(task.created_wall),
        "finished_at": wall(task.finished_at),
        "deleted_at": wall(task.deleted_at),
        "credits": task.credits,  # charged at creation
        "cost": task.cost,  # final cost (refunds deducted); None while active
        "failure_code": task.failure.code if task.failure else None,
        "faults": list(task.faults),
    }


async def list_tasks(request: Request) -> list[dict[str, Any]]:
    state = get_state(request)
    state.engine.advance(state.clock())
    return [task_summary(task) for task in state.ledger.values()]


def build_router() -> APIRouter:
    router = APIRouter(prefix="/_sim")
    router.add_api_route("/health", health, methods=["GET"])
    router.add_api_route("/scenario", get_scenario, methods=["GET"])
    router.add_api_route("/scenario", put_scenario, methods=["PUT"])
    router.add_api_route("/counters", counters, methods=["GET"])
    router.add_api_route("/reset", reset, methods=["POST"])
    router.add_api_route("/tasks", list_tasks, methods=["GET"])
    router.add_api_route("/tasks/{task_id}", task_timeline, methods=["GET"])
    return router
