"""The HTTP side of a service process: ``/healthz``, ``/readyz``, ``/metrics``, served at once.

``/readyz`` answers ``{"status": "ok" | "unavailable", "checks": {name: "ok" | "error: …"}}``
(200 or 503), the same shape as the gateway's documented readiness response.

:func:`ops_app` is the small Starlette app every process serves (a relay process serves only
it); :class:`Dispatch` serves it until the service's own ASGI app (the gateway's API) is set,
so that a process answers its probes from its first second, also while it waits for its
database or broker. Meanwhile any other path of a process that will serve an app answers
``503`` with ``Retry-After: 1`` and code ``starting`` (the gateway's error shape): a client
retries, where a ``404`` would have told it the resource does not exist.
:func:`serve_http` runs uvicorn until a stop event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidgen_common.metrics import Metrics

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]


def ops_app(
    service: str,
    check_ready: ReadyCheck,
    metrics: Metrics,
    starting: Callable[[], bool] = lambda: False,
) -> Starlette:
    """The ops endpoints; ``starting()`` true: other paths are the service's own, not yet
    served (503 "starting"), else they do not exist (404)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def readyz(_: Request) -> Response:
        checks = await check_ready()
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, 200 if ok else 503)

    async def render(_: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def elsewhere(_: Request, exc: Exception) -> Response:
        if not starting():
            return JSONResponse(
                {"error": {"code": "not_found", "message": "Not Found", "details": {}}}, 404
            )
        body = {"code": "starting", "message": f"{service} is starting; retry.", "details": {}}
        return JSONResponse({"error": body}, 503, headers={"Retry-After": "1"})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", render),
        ],
        exception_handlers={404: elsewhere},
    )


class Dispatch:
    """An ASGI app that forwards to ``app()`` when it returns one, else to ``fallback``."""

    def __init__(self, app: Callable[[], Any], fallback: Any) -> None:
        self._app = app
        self._fallback = fallback

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        target = self._app() or self._fallback
        await target(scope, receive, send)


async def serve_http(app: Any, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve an ASGI app with uvicorn until ``stop`` is set (no signal handlers of its own)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    # The process's own SIGTERM handling sets `stop`; uvicorn must not take the signals.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    server.should_exit = True
    await task
