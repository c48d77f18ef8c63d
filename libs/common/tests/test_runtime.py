"""ServiceRuntime end to end: migrations, topics, relay, consumer, ops endpoints, clean stop."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from vidgen_common.events import Envelope, GenerationCancelRequested
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import (
    DatabaseSettings,
    KafkaSettings,
    ServiceSettings,
    TelemetrySettings,
)
from vidgen_common.testing import wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_service_relays_its_events_to_its_consumers_in_one_trace(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str, tmp_path: Path
) -> None:
    trace_file = tmp_path / "spans.jsonl"
    settings = ServiceSettings(
        service_name=db_schema,
        http_port=free_port(),
        kafka=kafka_settings,
        db=db_settings,
        telemetry=TelemetrySettings(vidgen_trace_file=str(trace_file)),
    )
    seen: list[Envelope[GenerationCancelRequested]] = []
    async with ServiceRuntime(
        settings, emits=[GenerationCancelRequested], configure_logs=False
    ) as rt:

        async def on_cancel(env: Envelope[GenerationCancelRequested]) -> None:
            seen.append(env)
            if env.data.user_id == "first":  # the handler emits a follow-up event
                async with rt.uow() as uow:
                    assert await uow.claim("t", env)
                    uow.emit(env.data.model_copy(update={"user_id": "second"}))
                    await uow.commit()

        rt.add_consumer("t", {GenerationCancelRequested: on_cancel})
        task = asyncio.create_task(rt.run(install_signals=False))
        await asyncio.wait_for(rt.ready.wait(), 20)
        with rt.tracer.start_as_current_span("api request"):
            async with rt.uow() as uow:
                uow.emit(
                    GenerationCancelRequested(
                        generation_id="g1",
                        user_id="first",
                        requested_at=datetime.now(UTC),
                    )
                )
                await uow.commit()
        await wait_until(lambda: len(seen) >= 2, within=30, what="both events")
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(base + "/healthz")).json()["status"] == "ok"
            ready = await client.get(base + "/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ok", "database": "ok", "kafka": "ok"}
            metrics = (await client.get(base + "/metrics")).text
            handled_ok = (
                'vidgen_events_handled_total{consumer="t",outcome="ok",'
                'type="vidgen.generation.cancel-requested.v1"} 2.0'
            )
            assert handled_ok in metrics

            async def published_counted() -> bool:
                text = (await client.get(base + "/metrics")).text
                return "vidgen_outbox_published_total 2.0" in text

            await wait_until(published_counted, within=10, what="both outbox rows counted")
        rt.stop.set()
        await asyncio.wait_for(task, 30)
    assert [e.data.user_id for e in seen] == ["first", "second"]
    assert len({e.traceparent.split("-")[1] for e in seen if e.traceparent}) == 1
    spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert {s["name"] for s in spans} >= {"api request", "handle generation.cancel-requested"}
    assert len({s["trace_id"] for s in spans}) == 1
