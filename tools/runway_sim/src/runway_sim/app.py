"""`create_app(settings)`: the simulator as an ASGI app (nothing is built at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp

from runway_sim import admin, api, organization, outputs, uploads
from runway_sim.errors import install_error_handlers
from runway_sim.faults import FaultLayer
from runway_sim.scenario import Scenario, merged
from runway_sim.settings import Settings
from runway_sim.state import SimState


class SimApp(FastAPI):
    """FastAPI with `FaultLayer` outside every other middleware (it must see raw sends)."""

    def build_middleware_stack(self) -> ASGIApp:
        return FaultLayer(super().build_middleware_stack(), self.state.sim)


def _startup_scenario(settings: Settings) -> Scenario:
    scenario = settings.scenario
    if settings.scenario_file is not None:
        scenario = merged(scenario, json.loads(settings.scenario_file.read_text()))
    return scenario


def create_app(settings: Settings | None = None) -> SimApp:
    settings = settings if settings is not None else Settings()
    state = SimState(settings, _startup_scenario(settings))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.http = httpx.AsyncClient(timeout=settings.fetch_timeout_s)
        ticker = asyncio.get_running_loop().create_task(state.tick_forever())
        try:
            yield
        finally:
            ticker.cancel()
            state.cancel_background()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await state.http.aclose()
            state.http = None
            await asyncio.to_thread(state.renderer.shutdown)

    app = SimApp(
        title="Runway API simulator",
        description="Speaks the parts of Runway's API that vidgen uses. Dev and tests only.",
        lifespan=lifespan,
        openapi_url="/_sim/openapi.json",
        docs_url="/_sim/docs",
        redoc_url=None,
    )
    app.state.sim = state
    install_error_handlers(app)
    for module in (api, organization, uploads, outputs, admin):
        app.include_router(module.build_router())
    return app
