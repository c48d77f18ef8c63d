"""The AsyncAPI 3 document of vidgen's events, built from the event models.

``docs/events.asyncapi.yaml`` is generated from :func:`build_document` by
``scripts/gen_asyncapi.py``, which passes each service's declared emits and its consumer's
handler table (the lib knows no service); a test fails when the file drifts from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vidgen_common.events.envelope import dlq_topic, topic_for
from vidgen_common.events.models import ALL_EVENTS, EventData

Services = Mapping[str, Sequence[type[EventData]]]
"""Service name → event types (what each emits, or what its consumer's handler table reads)."""


def _who(services: Services, model: type[EventData], joined_by: str) -> str:
    names = [name for name, models in services.items() if model in models]
    if not names:
        return "no service"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {joined_by} {names[-1]}"


def _channel_id(model: type[EventData]) -> str:
    return model.__name__[0].lower() + model.__name__[1:]


def _headers(model: type[EventData]) -> dict[str, Any]:
    def text(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "description": description, **extra}

    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"],
        "properties": {
            "ce_specversion": text("CloudEvents version", const="1.0"),
            "ce_id": text("Unique event id; consumers dedupe on it"),
            "ce_source": text("Producing service", examples=["/vidgen/media"]),
            "ce_type": text("Event type and version", const=model.event_type()),
            "ce_time": text("When the event happened (RFC 3339)", format="date-time"),
            "ce_subject": text("The generation id (same as the Kafka key)"),
            "ce_traceparent": text("W3C trace context of the generation's trace"),
            "ce_tracestate": text("W3C trace state"),
            "content-type": text("Media type of the value", const="application/json"),
        },
    }


def build_document(producers: Services, consumers: Services) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a plain dict, ready to dump as YAML): ``producers`` send,
    ``consumers`` receive."""
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for model in ALL_EVENTS:
        schema = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}", mode="serialization"
        )
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        name = model.__name__
        channel = _channel_id(model)
        topic = topic_for(model)
        sent_by, read_by = _who(producers, model, "or"), _who(consumers, model, "and")
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "headers": _headers(model),
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "correlationId": {"location": "$message.header#/ce_subject"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "generation id"},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        channels[channel] = {
            "address": topic,
            "title": topic,
            "description": (
                f"One topic per event type, keyed by generation id. Produced by {sent_by}; "
                f"consumed by {read_by}. Records that a consumer cannot handle go to "
                f"{dlq_topic(topic)}."
            ),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
        }
        operations[f"send{name}"] = {
            "action": "send",
            "title": f"{sent_by} publishes {name}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
        if read_by != "no service":
            operations[f"receive{name}"] = {
                "action": "receive",
                "title": f"{read_by} consume{'' if ' and ' in read_by else 's'} {name}",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "vidgen generation events",
            "version": "1.0.0",
            "description": (
                "Events of vidgen's generation flow, as CloudEvents in Kafka binary mode "
                "(ce_* headers, JSON data, camelCase). Delivery is at-least-once: dedupe on "
                "ce_id. One generation's events share a key and stay in order within a topic; "
                "across topics, use the status order queued < generating < processing < "
                "completed/failed/cancelled."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "make infra-up",
            },
            "compose": {
                "host": "localhost:9094",
                "protocol": "kafka",
                "description": "docker compose",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
