"""The notifier's HTTP API (the gateway forwards ``/api/webhooks*`` here unchanged), and its
``/healthz``, ``/readyz``, ``/metrics``.

Every route but the signing key and the probes needs ``Authorization: Bearer <JWT>``, checked
with the gateway's settings (:mod:`vidgen_common.auth`). Errors answer the gateway's shape
``{"error": {"code", "message", "details"}}``; a 422 names the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vidgen_common.api_errors import error_body, install_error_handlers, validation_body
from vidgen_common.auth import TokenRejected, TokenVerifier
from vidgen_common.metrics import Metrics
from vidgen_notifier.endpoints import Webhooks
from vidgen_notifier.errors import Unauthorized
from vidgen_notifier.schemas import (
    Accepted,
    DeliveryPage,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointPatch,
    EndpointView,
    Rotated,
    RotateRequest,
    SigningKeyView,
    UserSecretView,
)
from vidgen_notifier.signing import SigningKey

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]

_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the user id")


def _webhooks(request: Request) -> Webhooks:
    service: Webhooks = request.app.state.webhooks
    return service


async def _user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return await verifier.user_id(credentials.credentials)
    except TokenRejected as exc:
        raise Unauthorized(str(exc)) from exc


UserDep = Annotated[str, Depends(_user)]
WebhooksDep = Annotated[Webhooks, Depends(_webhooks)]

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


@router.get("/signing-key", response_model=SigningKeyView, summary="The v1a verification key")
async def signing_key(request: Request) -> SigningKeyView:
    key: SigningKey = request.app.state.signing_key
    return SigningKeyView(public_key=key.public_key)


@router.get("/user-secret", response_model=UserSecretView, summary="Your own signing secret")
async def user_secret(user: UserDep, hooks: WebhooksDep) -> UserSecretView:
    return await hooks.user_secret(user)


@router.post("/user-secret/rotate", response_model=Rotated, summary="Rotate your own secret")
async def rotate_user_secret(
    user: UserDep, hooks: WebhooksDep, body: RotateRequest | None = None
) -> Rotated:
    return await hooks.rotate_user_secret(user, body.overlap_seconds if body else None)


@router.post("", status_code=201, response_model=EndpointCreated, summary="Register an endpoint")
async def create(user: UserDep, hooks: WebhooksDep, body: EndpointCreate) -> EndpointCreated:
    return await hooks.create(user, body)


@router.get("", response_model=EndpointList, summary="Your endpoints")
async def list_endpoints(user: UserDep, hooks: WebhooksDep) -> EndpointList:
    return EndpointList(items=await hooks.list(user))


@router.get("/{endpoint_id}", response_model=EndpointView, summary="One endpoint")
async def get(user: UserDep, hooks: WebhooksDep, endpoint_id: str) -> EndpointView:
    return await hooks.get(user, endpoint_id)


@router.patch("/{endpoint_id}", response_model=EndpointView, summary="Change an endpoint")
async def patch(
    user: UserDep, hooks: WebhooksDep, endpoint_id: str, body: EndpointPatch
) -> EndpointView:
    return await hooks.patch(user, endpoint_id, body)


@router.delete("/{endpoint_id}", status_code=204, summary="Delete an endpoint")
async def delete(user: UserDep, hooks: WebhooksDep, endpoint_id: str) -> Response:
    await hooks.delete(user, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=Rotated, summary="Rotate the secret")
async def rotate(
    user: UserDep, hooks: WebhooksDep, endpoint_id: str, body: RotateRequest | None = None
) -> Rotated:
    return await hooks.rotate(user, endpoint_id, body.overlap_seconds if body else None)


@router.post("/{endpoint_id}/ping", status_code=202, response_model=Accepted, summary="Test ping")
async def ping(user: UserDep, hooks: WebhooksDep, endpoint_id: str) -> Accepted:
    return Accepted(delivery_id=await hooks.ping(user, endpoint_id))


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage, summary="Delivery log")
async def deliveries(
    user: UserDep,
    hooks: WebhooksDep,
    endpoint_id: str,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DeliveryPage:
    return await hooks.deliveries(user, endpoint_id, cursor, limit)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=Accepted,
    summary="Send a delivery again (same webhook-id)",
)
async def redeliver(
    user: UserDep, hooks: WebhooksDep, endpoint_id: str, delivery_id: str
) -> Accepted:
    return Accepted(delivery_id=await hooks.redeliver(user, endpoint_id, delivery_id))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(validation_body(exc.errors(), name_field=True), 422)


def create_app(
    webhooks: Webhooks,
    verifier: TokenVerifier,
    key: SigningKey,
    *,
    service: str,
    check_ready: ReadyCheck,
    metrics: Metrics | None,
) -> FastAPI:
    app = FastAPI(
        title="vidgen notifier",
        version="1.0.0",
        description="Signed webhooks (Standard Webhooks 1.0) for vidgen's generations.",
        redoc_url=None,
    )
    app.state.webhooks = webhooks
    app.state.verifier = verifier
    app.state.signing_key = key
    app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = await check_ready()
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, 200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def render() -> Response:
        if metrics is None:
            return JSONResponse(error_body("not_found", "No metrics here."), 404)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    install_error_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app
