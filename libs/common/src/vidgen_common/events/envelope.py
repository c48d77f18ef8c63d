"""The CloudEvent envelope and its Kafka binary binding.

Binary mode (CloudEvents Kafka protocol binding 1.0): every context attribute is a ``ce_``
header, ``datacontenttype`` is the ``content-type`` header, the value is the JSON ``data``
and the Kafka key is the generation id (so one generation's events stay in order).
Trace context rides in ``ce_traceparent`` / ``ce_tracestate`` (the distributed-tracing
extension), so one trace follows a generation through every service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import ValidationError

from vidgen_common.clock import utc_now
from vidgen_common.errors import MalformedEvent
from vidgen_common.events.catalog import DEFAULT_CATALOG, Catalog
from vidgen_common.events.models import EventData

E = TypeVar("E", bound=EventData, covariant=True)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One CloudEvent: context attributes plus the typed ``data``."""

    data: E
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utc_now)
    traceparent: str | None = None
    tracestate: str | None = None
    type: str = ""

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", self.data.event_type())

    @property
    def subject(self) -> str:
        return self.data.generation_id

    @property
    def key(self) -> bytes:
        return self.data.generation_id.encode()


def topic_for(model: type[EventData] | EventData, prefix: str = "") -> str:
    """Kafka topic of an event type: its name, after an optional isolation prefix."""
    return f"{prefix}{model.name}"


def dlq_topic(topic: str) -> str:
    """The dead-letter twin of a topic."""
    return f"{topic}.dlq"


def encode(envelope: Envelope[EventData]) -> tuple[bytes, bytes, Headers]:
    """Key, value and headers of the Kafka record for ``envelope`` (binary mode)."""
    headers: Headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_time", envelope.time.isoformat().encode()),
        ("ce_subject", envelope.subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if envelope.traceparent:
        headers.append(("ce_traceparent", envelope.traceparent.encode()))
    if envelope.tracestate:
        headers.append(("ce_tracestate", envelope.tracestate.encode()))
    value = envelope.data.model_dump_json(by_alias=True).encode()
    return envelope.key, value, headers


def decode(
    headers: Sequence[tuple[str, bytes]], value: bytes | None, catalog: Catalog = DEFAULT_CATALOG
) -> Envelope[EventData]:
    """The envelope in a Kafka record; raises :class:`MalformedEvent` when it holds none."""
    try:
        attrs = {k: v.decode() for k, v in headers if k.startswith("ce_")}
        content_type = next((v.decode() for k, v in headers if k == "content-type"), CONTENT_TYPE)
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"header is not UTF-8: {exc}") from exc
    missing = [a for a in ("ce_id", "ce_source", "ce_type", "ce_specversion") if a not in attrs]
    if missing:
        raise MalformedEvent(f"not a CloudEvent: missing {', '.join(missing)}")
    if attrs["ce_specversion"] != SPEC_VERSION:
        raise MalformedEvent(f"unsupported specversion {attrs['ce_specversion']}")
    if not content_type.startswith(CONTENT_TYPE):
        raise MalformedEvent(f"unsupported content-type {content_type}")
    model, version = catalog.parse_type(attrs["ce_type"])
    try:
        raw = json.loads(value or b"")
        if not isinstance(raw, dict):
            raise MalformedEvent("data is not a JSON object")
        data = model.model_validate(catalog.upcast(model.name, version, raw))
        time = datetime.fromisoformat(attrs["ce_time"]) if "ce_time" in attrs else utc_now()
    except (ValueError, ValidationError) as exc:
        raise MalformedEvent(f"{attrs['ce_type']}: {exc}") from exc
    if "ce_subject" in attrs and attrs["ce_subject"] != data.generation_id:
        raise MalformedEvent("ce_subject does not match data.generationId")
    return Envelope(
        data=data,
        source=attrs["ce_source"],
        id=attrs["ce_id"],
        time=time,
        traceparent=attrs.get("ce_traceparent"),
        tracestate=attrs.get("ce_tracestate"),
        type=model.event_type(),
    )
