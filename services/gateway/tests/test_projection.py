"""The projection fed with real envelopes: duplicates, any order, moderation, notifications."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from vidgen_common.errors import PermanentError
from vidgen_common.events import Envelope, GenerationRequested, VideoUrlExpired
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE

pytestmark = pytest.mark.integration


async def status_of(client: httpx.AsyncClient, auth: Any, user: str, gid: str) -> dict[str, Any]:
    r = await client.get(f"/api/videos/status/{gid}", headers=auth(user))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_duplicated_events_have_one_effect(
    client: httpx.AsyncClient, auth: Any, generate: Any, gateway: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    envelope: Envelope[Any] = Envelope(data=ev.progressed(0.5), source="/vidgen/poller")
    await gateway.handlers.table()[type(envelope.data)](envelope)
    before = await status_of(client, auth, "alice", gid)
    for _ in range(3):  # redelivered: the inbox drops it
        await gateway.handlers.table()[type(envelope.data)](envelope)
    after = await status_of(client, auth, "alice", gid)
    assert after == before
    assert after["progress"] == pytest.approx(0.5)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
async def test_any_arrival_order_ends_in_the_same_state(
    client: httpx.AsyncClient,
    auth: Any,
    generate: Any,
    feed: Any,
    downstream: Any,
    order: tuple[int, ...],
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    events = [ev.submitted(estimate=30), ev.progressed(0.7), ev.ready(cost=25), ev.completed(25)]
    seen_statuses = []
    for i in order:
        await feed(events[i])
        seen_statuses.append((await status_of(client, auth, "alice", gid))["status"])
    rank = ["queued", "generating", "processing", "completed"]
    assert [rank.index(s) for s in seen_statuses] == sorted(rank.index(s) for s in seen_statuses)
    final = await status_of(client, auth, "alice", gid)
    assert final["status"] == "completed"
    assert final["progress"] == 1
    assert (final["costCredits"], final["costFinal"]) == (25, True)
    assert final["runwayTaskId"] == "task-1"
    assert final["videoUrl"] is not None


async def test_terminal_status_never_changes_and_progress_never_drops(
    client: httpx.AsyncClient, auth: Any, generate: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    await feed(ev.progressed(0.6))
    await feed(ev.progressed(0.3))  # late, older observation
    assert (await status_of(client, auth, "alice", gid))["progress"] == pytest.approx(0.6)
    await feed(ev.failed(message="Runway: internal error"))
    failed = await status_of(client, auth, "alice", gid)
    for late in (ev.submitted(), ev.progressed(0.9), ev.ready(), ev.completed()):
        await feed(late)
    after = await status_of(client, auth, "alice", gid)
    assert after["status"] == "failed"
    assert after["errorMessage"] == "Runway: internal error"
    assert after["videoUrl"] is None
    assert after["completedAt"] == failed["completedAt"]


async def test_moderation_failures_show_a_neutral_message_and_keep_the_reason(
    client: httpx.AsyncClient, auth: Any, generate: Any, feed: Any, downstream: Any, runtime: Any
) -> None:
    gid = await generate("alice")
    raw = "Input text flagged: weapons (score 0.98)"
    await feed(downstream(gid, "alice").failed("moderation", raw, "SAFETY.INPUT.TEXT"))
    shown = await status_of(client, auth, "alice", gid)
    assert shown["status"] == "failed"
    assert shown["errorCode"] == "moderation"
    assert shown["runwayFailureCode"] == "SAFETY.INPUT.TEXT"
    assert shown["errorMessage"] == MODERATION_USER_MESSAGE
    assert raw not in str(shown)
    from sqlalchemy import text

    async with runtime.engine.connect() as conn:
        stored = await conn.execute(
            text("SELECT error_message FROM generations WHERE id = :g"), {"g": gid}
        )
        assert stored.scalar_one() == raw  # the real reason is kept


async def test_cost_is_estimated_then_final(
    client: httpx.AsyncClient, auth: Any, generate: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    await feed(ev.submitted(estimate=50))
    s = await status_of(client, auth, "alice", gid)
    assert (s["costCredits"], s["costFinal"]) == (50, False)
    await feed(ev.ready(cost=0))  # refunded task: final cost 0
    await feed(ev.progressed(0.9))  # a late estimate does not overwrite the final cost
    s = await status_of(client, auth, "alice", gid)
    assert (s["costCredits"], s["costFinal"]) == (0, True)


async def test_each_change_bumps_the_version_and_notifies(
    generate: Any, feed: Any, downstream: Any, gateway: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    with gateway.changes.subscribe(gid) as sub:
        await feed(ev.progressed(0.2))
        assert await sub.wait(5), "no NOTIFY after a change"
        await feed(ev.progressed(0.1))  # nothing visible changes: no notification
        await feed(
            VideoUrlExpired(
                generation_id=gid,
                user_id="alice",
                runway_task_id="t",
                reported_at=ev.ready().fetched_at,
            )
        )
        assert not await sub.wait(0.5)
    from sqlmodel import select

    from vidgen_gateway.models import Generation

    async with gateway.deps.sessions() as s:
        row = (await s.exec(select(Generation).where(Generation.id == gid))).one()
    assert row.version == 2


async def test_events_for_an_unknown_generation_are_dead_lettered(
    gateway: Any, downstream: Any
) -> None:
    envelope: Envelope[Any] = Envelope(
        data=downstream("no-such-generation", "x").progressed(0.1), source="/vidgen/poller"
    )
    with pytest.raises(PermanentError):
        await gateway.handlers.table()[type(envelope.data)](envelope)


async def test_generation_requested_rebuilds_a_missing_row(
    client: httpx.AsyncClient, auth: Any, gateway: Any, feed: Any
) -> None:
    from datetime import UTC, datetime

    await feed(
        GenerationRequested(
            generation_id="rebuilt-1",
            project_id="p-1",
            user_id="zoe",
            image_key="images/zoe/p-1.png",
            image_content_type="image/png",
            prompt="rebuilt",
            model="gen4_turbo",
            ratio="1280:720",
            duration=5,
            requested_at=datetime.now(UTC),
        )
    )
    s = await status_of(client, auth, "zoe", "rebuilt-1")
    assert (s["status"], s["prompt"]) == ("queued", "rebuilt")


async def test_concurrent_events_of_one_generation_serialise(
    client: httpx.AsyncClient, auth: Any, generate: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    await asyncio.gather(*(feed(ev.progressed(p / 10)) for p in range(1, 10)))
    s = await status_of(client, auth, "alice", gid)
    assert s["progress"] == pytest.approx(0.9)


async def test_its_own_generation_requested_is_skipped_without_a_transaction(
    generate: Any, gateway: Any, outbox: Any, runtime: Any
) -> None:
    from sqlalchemy import text

    from vidgen_common.events import decode

    gid = await generate("alice")
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(text("SELECT key, value, headers FROM outbox"))).one()
    headers = [(k, v.encode()) for k, v in row[2]]
    envelope = decode(headers, bytes(row[1]))
    assert envelope.data.generation_id == gid
    await gateway.handlers.table()[type(envelope.data)](envelope)
    async with runtime.engine.connect() as conn:
        claimed = await conn.execute(text("SELECT count(*) FROM inbox"))
        assert claimed.scalar_one() == 0  # nothing was written: the row came with the event
