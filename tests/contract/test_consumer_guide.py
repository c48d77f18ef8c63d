"""The consumer guide's example really reads what vidgen publishes."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.events import Envelope, GenerationCompleted, encode, topic_for
from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings
from vidgen_testing import unique

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "consume_completed.py"


async def test_the_documented_consumer_receives_a_completed_generation(
    kafka_settings: KafkaSettings,
) -> None:
    spec = importlib.util.spec_from_file_location("consume_completed", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    topic = topic_for(GenerationCompleted, kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, [topic])
    data = GenerationCompleted(
        generation_id="g-42",
        user_id="u-1",
        video_key="videos/u-1/g-42.mp4",
        thumbnail_key="videos/u-1/g-42.jpg",
        size_bytes=123,
        sha256="ab" * 32,
        duration_seconds=5.0,
        width=426,
        height=240,
        codec="h264",
        completed_at=datetime.now(UTC),
    )
    env = Envelope(data=data, source="/vidgen/media")
    publisher = KafkaPublisher(kafka_settings, client_id="test")
    await publisher.start()
    try:
        await publisher.publish([Record(topic, *encode(env))])
    finally:
        await publisher.stop()

    got: list[tuple[dict[str, Any], dict[str, Any]]] = []
    stop = asyncio.Event()

    async def on_completed(attributes: dict[str, Any], payload: dict[str, Any]) -> None:
        got.append((attributes, payload))
        stop.set()

    await asyncio.wait_for(
        example.consume(
            on_completed,
            bootstrap=kafka_settings.bootstrap_servers,
            topic=topic,
            group_id=unique("docs-"),
            stop=stop,
        ),
        timeout=30,
    )
    [(attributes, payload)] = got
    assert attributes["id"] == env.id
    assert attributes["type"] == "vidgen.generation.completed.v1"
    assert attributes["subject"] == "g-42"
    assert payload["videoKey"] == "videos/u-1/g-42.mp4"
    assert payload["sha256"] == "ab" * 32
