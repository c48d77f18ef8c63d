"""The FastAPI application: :func:`create_app` builds it from settings and adapters.

Nothing here touches the network: the adapters in :class:`GatewayDeps` are built by
:mod:`vidgen_gateway.bootstrap` (or by tests), and the app only holds them.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from vidgen_gateway.api import events, health, uploads, videos
from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.api.errors import error_responses, install_error_handlers
from vidgen_gateway.api.observe import Observe
from vidgen_gateway.generations import Generations
from vidgen_gateway.projects import Projects
from vidgen_gateway.settings import GatewaySettings

DESCRIPTION = """\
The REST API of vidgen: upload an image, ask for a video, follow it to the end.

Every endpoint but health and docs needs `Authorization: Bearer <JWT>` (the `sub` claim is
the user id). JSON is camelCase. Every error answers
`{"error": {"code", "message", "details"}}`.
"""


def create_app(
    settings: GatewaySettings, deps: GatewayDeps, *, tracer: Tracer | None = None
) -> FastAPI:
    """The gateway's HTTP API on ``deps``."""
    settings.check_safe()
    app = FastAPI(
        title="vidgen gateway",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        responses=error_responses(500),
    )
    app.state.settings = settings
    app.state.deps = deps
    app.state.generations = Generations(settings, deps.uow, deps.channel)
    app.state.projects = Projects(settings, deps.sessions, deps.storage)
    install_error_handlers(app)
    for module in (health, uploads, videos, events):
        app.include_router(module.router)
    app.add_middleware(Observe, tracer=tracer, metrics=deps.metrics)
    return app
