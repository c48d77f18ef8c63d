"""The poller's tracking on real PostgreSQL, with a fake Runway and a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.events import GenerationCancelRequested, VideoUrlExpired
from vidgen_common.runway import Classified, Verdict

pytestmark = pytest.mark.integration

Make = Any  # conftest's MakePoller (test modules cannot import conftest)


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(
        generation_id=gid, user_id="u1", requested_at=datetime.now(UTC)
    )


async def test_first_poll_waits_until_the_task_can_be_done(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1")
    # prior 45 s for gen4_turbo, early = half of it, first poll at 80 % of that
    assert await p.due_in("t1") == pytest.approx(0.8 * 22.5, abs=0.01)
    assert await p.pass_() == 0
    p.clock.advance(17.9)
    assert await p.pass_() == 0
    p.clock.advance(0.2)
    p.runway.set("t1", "RUNNING", progress=0.35, estimated_cost_credits=25)
    assert await p.pass_() == 1
    assert p.runway.retrieves["t1"] == 1


async def test_progress_events_only_when_progress_moves(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1")
    p.clock.advance(20)
    for progress in (0.40, 0.45, 0.52, 0.55):
        p.runway.set("t1", "RUNNING", progress=progress, estimated_cost_credits=25)
        p.clock.advance(await p.due_in("t1"))
        await p.pass_()
    reported = [e["progress"] for e in await p.events("task-progressed")]
    assert reported == [0.40, 0.52]
    [event] = (await p.events("task-progressed"))[:1]
    assert event["runwayStatus"] == "RUNNING"
    assert event["estimatedCostCredits"] == 25


async def test_success_emits_video_ready_and_teaches_the_duration(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1")
    p.clock.advance(await p.due_in("t1"))
    p.runway.set("t1", "RUNNING", progress=0.4)
    await p.pass_()
    p.clock.advance(await p.due_in("t1"))
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    await p.pass_()
    [ready] = await p.events("video-ready")
    assert ready["outputUrls"] == ["https://out/1.mp4"]
    assert ready["costCredits"] == 25
    assert datetime.fromisoformat(ready["fetchedAt"]) == p.clock.now
    row = await p.row("t1")
    assert (row["state"], row["status"], row["polls"]) == ("done", "SUCCEEDED", 2)
    assert row["duration_s"] > 18
    p.clock.advance(3600)
    assert await p.pass_() == 0
    assert p.runway.retrieves["t1"] == 2


@pytest.mark.parametrize(
    ("code", "event_type", "error_code"),
    [
        ("SAFETY.INPUT.TEXT", "failed", "moderation"),
        ("SAFETY.OUTPUT.VIDEO", "failed", "moderation"),
        ("ASSET.INVALID", "failed", "runway_failed"),
        ("INTERNAL.BAD_OUTPUT.CODE01", "task-output-rejected", None),
    ],
)
async def test_failures_by_kind(
    make_poller: Make, code: str, event_type: str, error_code: str | None
) -> None:
    p = make_poller()
    await p.submit("t1", attempt=2)
    p.clock.advance(await p.due_in("t1"))
    p.runway.set("t1", "FAILED", failure="Runway's own words.", failure_code=code, cost_credits=0)
    await p.pass_()
    [event] = await p.events(event_type)
    if error_code is None:
        assert (event["attempt"], event["failureCode"]) == (2, code)
        assert event["failure"] == "Runway's own words."
        assert await p.events("failed") == []
        return
    assert (event["errorCode"], event["runwayFailureCode"]) == (error_code, code)
    assert event["errorMessage"] == "Runway's own words."
    assert event["stage"] == "poller"
    assert (event["userMessage"] is not None) == (error_code == "moderation")
    if event["userMessage"]:
        assert "Runway's own words" not in event["userMessage"]


async def test_video_ready_sums_the_cost_of_earlier_attempts(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1", gid="g1")
    p.clock.advance(await p.due_in("t1"))
    p.runway.set(
        "t1", "FAILED", failure="bad", failure_code="INTERNAL.BAD_OUTPUT.X", cost_credits=5
    )
    await p.pass_()
    await p.submit("t2", gid="g1", attempt=2)
    p.clock.advance(await p.due_in("t2"))
    p.runway.set("t2", "SUCCEEDED", output=("https://out",), cost_credits=25)
    await p.pass_()
    [ready] = await p.events("video-ready")
    assert ready["costCredits"] == 30


async def test_two_replicas_never_poll_a_task_twice(make_poller: Make) -> None:
    a, b = make_poller(max_concurrent_polls=8), make_poller(max_concurrent_polls=8)
    for i in range(20):
        await a.submit(f"t{i}")
        a.runway.set(f"t{i}", "RUNNING", progress=0.5)
    a.clock.advance(30)
    await asyncio.gather(a.pass_(), b.pass_(), a.pass_(), b.pass_(), a.pass_(), b.pass_())
    assert sum(a.runway.retrieves.values()) == 20
    assert set(a.runway.retrieves.values()) == {1}


async def test_a_poll_lost_with_its_replica_is_due_again_after_the_lease(make_poller: Make) -> None:
    a, b = make_poller(claim_lease_s=30), make_poller(claim_lease_s=30)
    await a.submit("t1")
    a.clock.advance(30)
    async with a.sessions() as s:
        from vidgen_poller import store

        rows, _ = await store.claim_due(s, a.clock.now, 10, 30)  # claimed; the replica dies
        await s.commit()
    assert len(rows) == 1
    a.runway.set("t1", "SUCCEEDED", output=("https://out",), cost_credits=25)
    assert await b.pass_() == 0
    a.clock.advance(31)
    assert await b.pass_() == 1
    assert len(await a.events("video-ready")) == 1


async def test_cancel_after_submission_deletes_the_task(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1", gid="g1")
    p.runway.set("t1", "RUNNING", progress=0.1)
    await p.deliver(cancel("g1"))
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    [event] = await p.events("cancelled")
    assert (event["stage"], event["runwayTaskId"]) == ("poller", "t1")
    assert (await p.row("t1"))["state"] == "done"


async def test_cancel_before_task_submitted_deletes_it_on_arrival(make_poller: Make) -> None:
    p = make_poller()
    await p.deliver(cancel("g1"))
    assert await p.events("cancelled") == []  # nothing at Runway yet
    await p.submit("t1", gid="g1")
    p.runway.set("t1", "PENDING")
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    assert len(await p.events("cancelled")) == 1


async def test_deadline_cancels_at_runway_and_fails(make_poller: Make) -> None:
    p = make_poller(deadline_s=120)
    await p.submit("t1")
    p.runway.set("t1", "THROTTLED")
    for _ in range(20):
        p.clock.advance(await p.due_in("t1"))
        await p.pass_()
        if p.runway.deletes:
            break
    assert p.runway.deletes == ["t1"]
    [failed] = await p.events("failed")
    assert failed["errorCode"] == "runway_timeout"
    assert p.metrics.deadline_exceeded._value.get() == 1


async def test_rate_limits_back_off_and_pause_polling(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1")
    await p.submit("t2")
    p.clock.advance(20)
    p.runway.tasks["t1"] = Classified(Verdict.RETRY, "runway_rate_limited", "slow down", 4.0)
    p.runway.set("t2", "RUNNING", progress=0.5)
    await p.pass_()
    assert 4.0 <= await p.due_in("t1") <= 4.8
    assert (await p.row("t1"))["errors"] == 1
    p.clock.advance(1)
    assert await p.pass_() == 0  # paused: Runway's limit is per organisation
    p.runway.tasks["t1"] = Classified(Verdict.RETRY, "runway_unavailable", "Service unavailable")
    p.clock.advance(4)
    await p.pass_()
    assert (await p.row("t1"))["errors"] == 2
    p.runway.set("t1", "SUCCEEDED", output=("https://out",), cost_credits=25)
    p.clock.advance(await p.due_in("t1"))
    await p.pass_()
    assert [e["runwayTaskId"] for e in await p.events("video-ready")] == ["t1"]
    assert (await p.row("t1"))["errors"] == 0


async def test_a_task_unknown_to_runway_fails(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1")
    p.clock.advance(30)
    await p.pass_()
    [failed] = await p.events("failed")
    assert failed["errorCode"] == "runway_task_not_found"


async def test_expired_url_gets_a_fresh_video_ready(make_poller: Make) -> None:
    p = make_poller()
    await p.submit("t1", gid="g1")
    p.clock.advance(30)
    p.runway.set("t1", "SUCCEEDED", output=("https://out?sig=1",), cost_credits=25)
    await p.pass_()
    p.runway.set("t1", "SUCCEEDED", output=("https://out?sig=2",), cost_credits=25)
    p.clock.advance(3600)
    expired = VideoUrlExpired(
        generation_id="g1", user_id="u1", runway_task_id="t1", reported_at=p.clock.now
    )
    await p.deliver(expired)
    await p.deliver(
        VideoUrlExpired(  # a task this poller no longer tracks (purged, another database)
            generation_id="g2", user_id="u1", runway_task_id="t9", reported_at=p.clock.now
        )
    )
    p.runway.set("t9", "SUCCEEDED", output=("https://out9",), cost_credits=25)
    await p.pass_()
    ready = [(e["runwayTaskId"], e["outputUrls"]) for e in await p.events("video-ready")]
    assert ready[0] == ("t1", ["https://out?sig=1"])
    assert sorted(ready[1:]) == [("t1", ["https://out?sig=2"]), ("t9", ["https://out9"])]
    assert (await p.row("t1"))["state"] == "done"
