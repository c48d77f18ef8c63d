"""The one error shape every API answers with (vidgen_common.api_errors), on a bare Starlette
app: an API's own error, a routing error, a validation body, a dependency away, a bug."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from vidgen_common.api_errors import (
    ApiError,
    NotFound,
    Unauthorized,
    install_error_handlers,
    validation_body,
)


class Teapot(ApiError):
    status = 418
    code = "teapot"


async def teapot(_: Request) -> None:
    raise Teapot("short and stout", details={"spout": 1}, headers={"X-Tea": "yes"})


async def unknown(_: Request) -> None:
    raise NotFound("No such thing.")


async def anonymous(_: Request) -> None:
    raise Unauthorized()


async def database_away(_: Request) -> None:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


def client() -> httpx.AsyncClient:
    app = Starlette(
        routes=[
            Route("/teapot", teapot),
            Route("/unknown", unknown),
            Route("/anonymous", anonymous),
            Route("/away", database_away),
        ]
    )
    install_error_handlers(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def test_an_apis_own_error_answers_its_status_code_details_and_headers() -> None:
    async with client() as c:
        r = await c.get("/teapot")
    assert r.status_code == 418
    assert r.headers["x-tea"] == "yes"
    assert r.json() == {
        "error": {"code": "teapot", "message": "short and stout", "details": {"spout": 1}}
    }


async def test_not_found_unauthorized_and_routing_errors_share_the_shape() -> None:
    async with client() as c:
        unknown = await c.get("/unknown")
        anonymous = await c.get("/anonymous")
        no_route = await c.get("/nowhere")
        wrong_method = await c.post("/teapot")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert no_route.json() == {
        "error": {"code": "not_found", "message": "Not Found", "details": {}}
    }
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_a_dependency_away_is_a_503_to_retry_that_tells_nothing_of_our_insides() -> None:
    async with client() as c:
        r = await c.get("/away")
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "unavailable"
    assert "5432" not in r.text


def test_a_validation_body_lists_every_problem_and_can_name_the_first_field() -> None:
    errors = [
        {"loc": ("body", "url"), "msg": "not a URL", "type": "url_parsing"},
        {"loc": ("body", "events", 0), "msg": "unknown", "type": "enum"},
    ]
    plain = validation_body(errors)
    named = validation_body(errors, name_field=True)
    assert plain["error"]["code"] == "validation_error"
    assert plain["error"]["details"] == {
        "errors": [
            {"loc": ["body", "url"], "msg": "not a URL", "type": "url_parsing"},
            {"loc": ["body", "events", "0"], "msg": "unknown", "type": "enum"},
        ]
    }
    assert "field" not in plain["error"]["details"]
    assert named["error"]["details"]["field"] == "url"
