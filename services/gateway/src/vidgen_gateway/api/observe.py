"""Per-request telemetry: a server span continuing the caller's trace, and Prometheus metrics.

A span around each request makes the events the request emits (``GenerationRequested``)
carry its trace context, so one trace follows a generation from the API call onwards.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgen_common.metrics import Metrics
from vidgen_common.telemetry import context_from


class RequestMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.requests = Counter(
            "vidgen_http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=metrics.registry,
        )
        self.seconds = Histogram(
            "vidgen_http_request_seconds",
            "HTTP request latency by method and route template (to the end of the body)",
            ["method", "route"],
            registry=metrics.registry,
        )


class Observe:
    """ASGI middleware recording a span and metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, tracer: Tracer | None, metrics: Metrics | None) -> None:
        self.app = app
        self.tracer = tracer
        self.metrics = RequestMetrics(metrics) if metrics is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if self.tracer is None:
                await self.app(scope, receive, capture)
            else:
                with self.tracer.start_as_current_span(
                    f"{scope['method']} {scope['path']}",
                    context=context_from(headers.get("traceparent"), headers.get("tracestate")),
                    kind=SpanKind.SERVER,
                    attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
                ) as span:
                    await self.app(scope, receive, capture)
                    span.set_attribute("http.response.status_code", status[0])
        finally:
            if self.metrics is not None:
                route = _route(scope)
                self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
                self.metrics.seconds.labels(scope["method"], route).observe(
                    time.perf_counter() - started
                )


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
