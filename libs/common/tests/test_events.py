"""Events: round trips, versioning, and interop with the official CloudEvents SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import KafkaMessage, from_binary, to_binary

from vidgen_common.errors import MalformedEvent, UnknownEventType
from vidgen_common.events import (
    ALL_EVENTS,
    Catalog,
    Envelope,
    EventData,
    GenerationCompleted,
    GenerationRequested,
    decode,
    encode,
    topic_for,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def requested(gid: str = "g-1") -> GenerationRequested:
    return GenerationRequested(
        generation_id=gid,
        project_id="p-1",
        user_id="u-1",
        image_key="images/u-1/p-1.png",
        image_content_type="image/png",
        prompt="a lake at dawn",
        model="gen4_turbo",
        ratio="1280:720",
        duration=5,
        requested_at=NOW,
    )


def test_every_event_has_a_unique_type_and_topic() -> None:
    types = [m.event_type() for m in ALL_EVENTS]
    assert len(set(types)) == len(types)
    assert all(t.startswith("vidgen.generation.") and t.endswith(".v1") for t in types)
    assert topic_for(GenerationRequested, "x.") == "x.generation.requested"


def test_round_trip_keeps_data_and_attributes() -> None:
    env = Envelope(
        data=requested(), source="/gateway", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    key, value, headers = encode(env)
    assert key == b"g-1"
    assert json.loads(value)["generationId"] == "g-1"  # camelCase on the wire
    assert json.loads(value)["imageKey"] == "images/u-1/p-1.png"
    back = decode(headers, value)
    assert back == env


def test_events_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        requested().prompt = "changed"  # type: ignore[misc]


def test_our_records_are_read_by_the_cloudevents_sdk() -> None:
    env = Envelope(data=requested(), source="/gateway")
    key, value, headers = encode(env)
    event = from_binary(KafkaMessage(headers=dict(headers), key=key, value=value))
    assert event["id"] == env.id
    assert event["type"] == "vidgen.generation.requested.v1"
    assert event["source"] == "/gateway"
    assert event["subject"] == "g-1"
    assert event["datacontenttype"] == "application/json"
    assert event.data["generationId"] == "g-1"
    assert datetime.fromisoformat(event["time"]) == env.time


def test_we_read_records_written_by_the_cloudevents_sdk() -> None:
    data = requested("g-9").model_dump(mode="json", by_alias=True)
    event = CloudEvent(
        {
            "type": "vidgen.generation.requested.v1",
            "source": "/other-producer",
            "subject": "g-9",
            "datacontenttype": "application/json",
            "traceparent": "00-" + "c" * 32 + "-" + "d" * 16 + "-01",
        },
        data,
    )
    msg = to_binary(event, key_mapper=lambda e: e["subject"])
    env = decode(list(msg.headers.items()), msg.value)
    assert isinstance(env.data, GenerationRequested)
    assert env.data == requested("g-9")
    assert env.id == event["id"]
    assert env.traceparent == event["traceparent"]
    assert msg.key == "g-9"


@pytest.mark.parametrize(
    ("headers", "value", "error"),
    [
        ([("content-type", b"application/json")], b"{}", "missing ce_id"),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"vidgen.nope.v1"),
            ],
            b"{}",
            "no event named",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"vidgen.generation.requested.v1"),
            ],
            b"not json",
            "generation.requested",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"vidgen.generation.requested.v1"),
            ],
            b'{"generationId": "g"}',
            "Field required",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"vidgen.generation.requested.v2"),
            ],
            b"{}",
            "newer than this code",
        ),
    ],
)
def test_malformed_records_are_rejected(
    headers: list[tuple[str, bytes]], value: bytes, error: str
) -> None:
    with pytest.raises((MalformedEvent, UnknownEventType), match=error):
        decode(headers, value)


def test_subject_must_match_generation_id() -> None:
    _, value, headers = encode(Envelope(data=requested("g-1"), source="/x"))
    headers = [(k, b"other" if k == "ce_subject" else v) for k, v in headers]
    with pytest.raises(MalformedEvent, match="subject"):
        decode(headers, value)


class CompletedV2(GenerationCompleted):
    """A hypothetical v2 that renamed sizeBytes to bytes (a breaking change)."""

    version = 2


def test_old_versions_are_upcast_step_by_step() -> None:
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "sizeBytes": data["sizeBytes"] * 1}

    models: tuple[type[EventData], ...] = tuple(
        CompletedV2 if m is GenerationCompleted else m for m in ALL_EVENTS
    )
    catalog = Catalog(models, {("generation.completed", 1): v1_to_v2})
    v1 = GenerationCompleted(
        generation_id="g",
        user_id="u",
        video_key="videos/u/g.mp4",
        size_bytes=10,
        sha256="0" * 64,
        duration_seconds=5.0,
        width=320,
        height=180,
        codec="h264",
        completed_at=NOW,
    )
    _, value, headers = encode(Envelope(data=v1, source="/media"))
    env = decode(headers, value, catalog)
    assert isinstance(env.data, CompletedV2)
    assert env.type == "vidgen.generation.completed.v2"
    assert env.data.size_bytes == 10
    with pytest.raises(UnknownEventType, match="no upcaster"):
        decode(headers, value, Catalog(models))
