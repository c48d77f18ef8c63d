"""OpenTelemetry: a tracer provider per service, and W3C trace context in Kafka headers.

The provider is built by :func:`build_tracer_provider` and passed in (not read from a global)
where spans are made. It exports over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
and as JSON lines to ``VIDGEN_TRACE_FILE`` when that is set (tests read that file).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vidgen_common.settings import TelemetrySettings

_PROPAGATOR = TraceContextTextMapPropagator()


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (safe across processes)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                        "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
                    }
                )
            )
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


def build_tracer_provider(service_name: str, settings: TelemetrySettings) -> TracerProvider:
    """A provider for ``service_name`` with the exporters the settings ask for."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if settings.vidgen_trace_file:
        provider.add_span_processor(
            SimpleSpanProcessor(JsonLinesSpanExporter(settings.vidgen_trace_file))
        )
    return provider


def current_trace_headers() -> tuple[str | None, str | None]:
    """``traceparent`` and ``tracestate`` of the current span (None when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def context_from(traceparent: str | None, tracestate: str | None) -> Context:
    """An OpenTelemetry context whose parent is the given W3C trace context."""
    carrier = {}
    if traceparent:
        carrier["traceparent"] = traceparent
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def current_trace_id() -> str | None:
    """Hex trace id of the current span, for logs."""
    ctx = trace.get_current_span(otel_context.get_current()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
