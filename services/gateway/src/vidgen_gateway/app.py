"""The FastAPI application: :func:`create_app` builds it from settings and adapters.

Nothing here touches the network: the adapters in :class:`GatewayDeps` are built by
:mod:`vidgen_gateway.bootstrap` (or by tests), and the app only holds them.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from vidgen_gateway.api import admin, catalog, devauth, events, health, uploads, usage, videos
from vidgen_gateway.api.cors import install_cors
from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.api.errors import error_responses, install_error_handlers
from vidgen_gateway.api.observe import Observe
from vidgen_gateway.api.webhooks import install_webhook_forwarding
from vidgen_gateway.generations import Generations
from vidgen_gateway.projects import Projects
from vidgen_gateway.queue import Queue
from vidgen_gateway.settings import GatewaySettings
from vidgen_gateway.site import install_site

DESCRIPTION = """\
The REST API of vidgen: upload an image, ask for a video, follow it to the end.

Every endpoint but health, docs and the model catalog needs `Authorization: Bearer <JWT>`
(the `sub` claim is the user id; the live stream also takes it as `access_token`, for
`EventSource`); `/api/admin` also needs the administrator role in the token's `roles` claim.
Every generation's estimated cost in credits is reserved against the caller's daily and
monthly budgets when it is requested (402 `budget_exceeded` when it does not fit) and settled
to Runway's real cost when it ends (`GET /api/usage`). JSON is camelCase. Webhooks
(`/api/webhooks…`) are the notifier's API, forwarded unchanged (its own `/openapi.json`
documents them). Every error answers
`{"error": {"code", "message", "details"}}`.
"""


ROUTERS = (
    health.router,
    catalog.router,
    uploads.router,
    videos.router,
    events.router,
    usage.router,
    admin.router,
)
"""Every router of the API; ``devauth.router`` is added when ``dev_sign_in`` is on."""


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
        responses=error_responses(500, 503),
    )
    app.state.settings = settings
    app.state.deps = deps
    app.state.generations = Generations(settings, deps.uow, deps.channel)
    app.state.projects = Projects(settings, deps.sessions, deps.storage)
    app.state.queue = Queue(settings)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.dev_sign_in:  # absent, not refused, in production
        app.include_router(devauth.router)
    install_webhook_forwarding(app, settings)  # the notifier's API, on this origin
    install_site(app, settings)
    app.add_middleware(Observe, tracer=tracer, metrics=deps.metrics)
    install_cors(app, settings)  # outermost: preflights answered before anything else
    return app
