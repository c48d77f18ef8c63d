"""``/api/webhooks`` and ``/api/webhooks/*``: forwarded unchanged to the notifier
(``VIDGEN_NOTIFIER_URL``), so that clients use one origin.

Method, path, query, body and the headers that matter (``Authorization``, ``Content-Type``,
``Accept``, trace context) go through as they came; the notifier checks the bearer token
itself with the same settings (:mod:`vidgen_common.auth`) and answers in the gateway's error
shape. A notifier that cannot be reached answers ``503`` with ``Retry-After``. The routes are
plain Starlette routes: they are the notifier's API, documented by the notifier's own
``/openapi.json``, not this app's.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidgen_gateway.api.errors import RETRY_AFTER_S, error_body
from vidgen_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

PREFIX = "/api/webhooks"
_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
_REQUEST_HEADERS = ("authorization", "content-type", "accept", "traceparent", "tracestate")
_RESPONSE_HEADERS = ("content-type", "retry-after", "www-authenticate", "location")


class WebhookForwarder:
    """Sends a request on to the notifier; one HTTP client, made on first use."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._base = settings.notifier_url.rstrip("/")
        self._timeout = settings.notifier_timeout_s
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def forward(self, request: Request) -> Response:
        url = self._base + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}
        try:
            answer = await self.client.request(
                request.method, url, content=await request.body(), headers=headers
            )
        except httpx.HTTPError as exc:
            log.warning("the notifier did not answer %s %s: %r", request.method, url, exc)
            body = error_body("unavailable", "The webhook service is briefly unavailable; retry.")
            return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_S)})
        kept = {k: v for k, v in answer.headers.items() if k.lower() in _RESPONSE_HEADERS}
        return Response(answer.content, answer.status_code, headers=kept)


def install_webhook_forwarding(app: FastAPI, settings: GatewaySettings) -> WebhookForwarder:
    forwarder = WebhookForwarder(settings)
    app.state.webhooks = forwarder
    for path in (PREFIX, PREFIX + "/{rest:path}"):
        app.router.routes.append(Route(path, forwarder.forward, methods=_METHODS))
    return forwarder
