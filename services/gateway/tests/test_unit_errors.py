"""The error handlers: a dependency that is briefly away is a 503 to retry, not a 500."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from vidgen_gateway.api.errors import install_error_handlers


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/database-away")
    async def database_away() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug")

    return app


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_a_dependency_away_answers_503_with_retry_after() -> None:
    async with client() as c:
        r = await c.get("/database-away")
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "unavailable"
    assert "5432" not in r.text  # nothing of our insides


async def test_a_bug_is_still_a_500_without_a_stack_trace() -> None:
    async with client() as c:
        r = await c.get("/bug")
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "internal_error", "message": "Internal error.", "details": {}}
    }
