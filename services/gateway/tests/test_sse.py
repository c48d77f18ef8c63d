"""Live streams over a real HTTP server (uvicorn on loopback): order, resume, keep-alive."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from vidgen_testing import wait_until
from vidgen_testing.sse import Stream

pytestmark = pytest.mark.integration


async def test_stream_sends_current_state_then_each_change_in_order_and_ends(
    base_url: str, auth: Any, generate: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as c,
        c.stream("GET", f"/api/videos/{gid}/events", headers=auth("alice")) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = Stream(r)
        first = await stream.next_event()
        assert first is not None
        assert (first["event"], first["id"], first["data"]["status"]) == (
            "generation",
            1,
            "queued",
        )
        seen = [first]
        for data, expected in (
            (ev.submitted(), "generating"),
            (ev.progressed(0.5), "generating"),
            (ev.ready(), "processing"),
            (ev.completed(), "completed"),
        ):
            await feed(data)
            got = await stream.next_event()
            assert got is not None
            assert got["data"]["status"] == expected
            seen.append(got)
        assert [e["id"] for e in seen] == sorted({e["id"] for e in seen})
        assert seen[2]["data"]["progress"] == pytest.approx(0.5)
        assert seen[-1]["data"]["videoUrl"]
        assert await stream.next_event() is None  # closed after the terminal status


async def test_last_event_id_resumes_after_what_the_client_has(
    base_url: str, auth: Any, generate: Any, feed: Any, downstream: Any
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    await feed(ev.submitted())  # version 2
    await feed(ev.progressed(0.3))  # version 3
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
        # the client saw version 1: it gets the current state (3) at once
        headers = {**auth("alice"), "Last-Event-ID": "1"}
        async with c.stream("GET", f"/api/videos/{gid}/events", headers=headers) as r:
            got = await Stream(r).next_event()
            assert got is not None
            assert (got["id"], got["data"]["progress"]) == (3, pytest.approx(0.3))
        # the client has version 3 already: nothing until the next change
        headers = {**auth("alice"), "Last-Event-ID": "3"}
        async with c.stream("GET", f"/api/videos/{gid}/events", headers=headers) as r:
            stream = Stream(r)
            waiting = asyncio.create_task(stream.next_event(within=15))
            await asyncio.sleep(0)  # let the request start before the change
            await wait_until(lambda: len(stream.comments) >= 1, what="a keep-alive comment")
            assert not waiting.done()
            await feed(ev.progressed(0.6))
            got = await waiting
            assert got is not None
            assert (got["id"], got["data"]["progress"]) == (4, pytest.approx(0.6))
            assert stream.comments[0] == ": keep-alive"
        # finished, and the client has the last state: 204 tells EventSource to stop
        await feed(ev.failed())
        async with c.stream("GET", f"/api/videos/{gid}/events", headers=auth("alice")) as r:
            last = await Stream(r).next_event()
            assert last is not None
            assert last["data"]["status"] == "failed"
        headers = {**auth("alice"), "Last-Event-ID": str(last["id"])}
        r204 = await c.get(f"/api/videos/{gid}/events", headers=headers)
        assert r204.status_code == 204


async def test_a_stream_wakes_on_a_change_made_elsewhere(
    base_url: str, auth: Any, generate: Any, gateway: Any, downstream: Any, runtime: Any
) -> None:
    """A change committed by another process (another replica's projection) reaches the
    stream through NOTIFY, not through anything in this process."""
    from vidgen_common.uow import UnitOfWork
    from vidgen_gateway.handlers import ProjectionHandlers

    # no re-read on a timer within this test: only the notification can wake the stream
    gateway.app.state.settings = gateway.app.state.settings.model_copy(
        update={"sse_keepalive_s": 60.0}
    )
    gid = await generate("alice")
    other_replica = ProjectionHandlers(
        lambda: UnitOfWork(runtime.sessions, source="/vidgen/other"), gateway.deps.channel
    )
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as c,
        c.stream("GET", f"/api/videos/{gid}/events", headers=auth("alice")) as r,
    ):
        stream = Stream(r)
        assert (await stream.next_event()) is not None
        from vidgen_common.events import Envelope

        await other_replica.on_event(
            Envelope(data=downstream(gid, "alice").progressed(0.8), source="/vidgen/poller")
        )
        got = await stream.next_event(within=10)
        assert got is not None
        assert got["data"]["progress"] == pytest.approx(0.8)


async def test_a_client_that_goes_away_is_unsubscribed(
    base_url: str, auth: Any, generate: Any, gateway: Any
) -> None:
    gid = await generate("alice")
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as c,
        c.stream("GET", f"/api/videos/{gid}/events", headers=auth("alice")) as r,
    ):
        assert (await Stream(r).next_event()) is not None
        assert gateway.changes.subscriber_count == 1
    # noticed at the latest at the next keep-alive write
    await wait_until(lambda: gateway.changes.subscriber_count == 0, within=10, what="unsubscribed")
