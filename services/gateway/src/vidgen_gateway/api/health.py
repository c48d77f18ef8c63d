"""``/healthz`` (the process is up), ``/readyz`` (it can do its job), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from vidgen_gateway.api.deps import DepsDep, SettingsDep
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.schemas import HealthResponse, ReadinessResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
async def healthz(settings: SettingsDep) -> HealthResponse:
    return HealthResponse(status="ok", service=settings.service_name)


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    summary="The gateway can do its job: database, broker and topics there, nothing stalled",
    responses={503: {"model": ReadinessResponse, "description": "Not ready"}},
)
async def readyz(deps: DepsDep) -> Response:
    checks = await deps.check_ready()
    ok = all(v == "ok" for v in checks.values())
    body = ReadinessResponse(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(by_alias=True), 200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(404),
    },
)
async def metrics(deps: DepsDep) -> Response:
    if deps.metrics is None:
        return JSONResponse(
            {"error": {"code": "not_found", "message": "No metrics here.", "details": {}}}, 404
        )
    return Response(deps.metrics.render(), media_type="text/plain; version=0.0.4")
