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
from vidgen_testing import wait_until

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
            assert ready.json() == {
                "status": "ok",
                "checks": {"database": "ok", "kafka": "ok", "topics": "ok", "relay": "ok"},
            }
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


async def test_a_relay_or_a_service_without_an_app_answers_404_off_its_ops_paths(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str
) -> None:
    port = free_port()
    settings = ServiceSettings(
        service_name=db_schema, http_port=port, kafka=kafka_settings, db=db_settings
    )
    async with (
        ServiceRuntime(settings, configure_logs=False) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
    ):
        task = asyncio.create_task(rt.run(install_signals=False))
        try:
            await asyncio.wait_for(rt.ready.wait(), 30)
            assert (await client.get("/nothing")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 30)


async def test_a_worker_answers_starting_before_its_service_is_bootstrapped(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str
) -> None:
    """The HTTP port opens while the runtime still waits for the database and the broker,
    before the service's bootstrap has said whether it serves an API: a request then must hear
    "starting, retry", not a 404 a client would take for "no such resource" (a gateway
    restarted under a client registering a webhook answered 404 in that window)."""
    port = free_port()
    settings = ServiceSettings(
        service_name=db_schema, http_port=port, kafka=kafka_settings, db=db_settings
    )
    async with (
        ServiceRuntime(settings, configure_logs=False),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
    ):
        # entered (the database and broker answered) but not bootstrapped nor run yet
        early = await client.get("/api/anything")
        assert early.status_code == 503
        assert early.json()["error"]["code"] == "starting"
        assert (await client.get("/healthz")).status_code == 200


async def test_the_service_app_is_served_once_its_start_up_steps_are_done(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str
) -> None:
    """Until a step of ``add_startup`` succeeds (it fails transiently first), ``/readyz``
    says what is awaited and the app given to ``serve`` is not answering; then it is."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    port = free_port()
    settings = ServiceSettings(
        service_name=db_schema,
        http_port=port,
        kafka=kafka_settings,
        db=db_settings,
        startup_backoff_max_s=0.2,
    )
    gate = asyncio.Event()
    tries = 0

    async def step() -> None:
        nonlocal tries
        tries += 1
        if not gate.is_set():
            raise ConnectionRefusedError("the object store is away")

    async def own(_: object) -> PlainTextResponse:
        return PlainTextResponse("the service's own")

    base = f"http://127.0.0.1:{port}"
    async with (
        ServiceRuntime(settings, configure_logs=False) as rt,
        httpx.AsyncClient(base_url=base, timeout=5) as client,
    ):
        rt.add_startup("the object store", step)
        rt.serve(Starlette(routes=[Route("/own", own)]))
        task = asyncio.create_task(rt.run(install_signals=False))
        try:

            async def waiting() -> bool:
                r = await client.get("/readyz")
                return r.status_code == 503 and "the object store" in r.text

            await wait_until(waiting, within=20, what="readyz naming the object store")
            assert tries >= 1
            # Only the ops app so far: the service's own routes answer "starting, retry" (a
            # client must not take a starting gateway's 404 for "no such resource").
            early = await client.get("/own")
            assert early.status_code == 503
            assert early.headers["retry-after"] == "1"
            assert early.json()["error"]["code"] == "starting"
            gate.set()
            await asyncio.wait_for(rt.ready.wait(), 20)
            assert (await client.get("/own")).text == "the service's own"
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 30)
