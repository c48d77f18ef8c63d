"""The poller's tracking on real PostgreSQL, with a fake Runway and a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vidgen_common.db import run_sql
from vidgen_common.events import (
    Envelope,
    GenerationCancelRequested,
    TaskSubmitted,
    VideoUrlExpired,
)
from vidgen_common.uow import UnitOfWork
from vidgen_poller.handlers import PollerHandlers
from vidgen_runway.verdicts import Classified, Verdict
from vidgen_testing import wait_until

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
    p.runway.set("t1", "RUNNING", progress=0.1)
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


async def test_a_repeated_refresh_waits_longer_for_fresh_urls(make_poller: Make) -> None:
    """URLs that expire before media can fetch them: the first refresh is at once, each
    further one backs off, so a burst of short-lived URLs does not burn every refresh."""
    p = make_poller(retry_cap_s=30)
    for task_id in ("t1", "t2"):
        await p.submit(task_id, gid=f"g-{task_id}")
    p.clock.advance(30)
    for task_id in ("t1", "t2"):
        p.runway.set(task_id, "SUCCEEDED", output=(f"https://out/{task_id}",), cost_credits=25)
    await p.pass_()
    for task_id, refreshes in (("t1", 1), ("t2", 4)):
        await p.deliver(
            VideoUrlExpired(
                generation_id=f"g-{task_id}",
                user_id="u1",
                runway_task_id=task_id,
                reported_at=p.clock.now,
                refreshes=refreshes,
            )
        )
    assert await p.due_in("t1") <= 0
    assert 2.0 <= await p.due_in("t2") <= 4.0  # the backoff after 3 tries: 2-4 s
    await p.pass_()
    ready = [e["runwayTaskId"] for e in await p.events("video-ready")]
    assert sorted(ready) == ["t1", "t1", "t2"]


# -- defect: the deadline destroyed finished videos ----------------------------------------------


async def test_a_late_task_submitted_yields_the_video_of_its_succeeded_task(
    make_poller: Make,
) -> None:
    """The poller was down (or a DLQ replay came) long after the task was created."""
    p = make_poller(deadline_s=900)
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    await p.submit("t1", submitted_at=p.clock.now - timedelta(hours=2))
    p.clock.advance(await p.due_in("t1"))
    await p.pass_()
    assert p.runway.deletes == []
    [ready] = await p.events("video-ready")
    assert ready["outputUrls"] == ["https://out/1.mp4"]
    assert await p.events("failed") == []


async def test_a_late_task_that_failed_keeps_runways_code(make_poller: Make) -> None:
    p = make_poller(deadline_s=900)
    p.runway.set("t1", "FAILED", failure="bad image", failure_code="ASSET.INVALID")
    await p.submit("t1", submitted_at=p.clock.now - timedelta(hours=2))
    p.clock.advance(await p.due_in("t1"))
    await p.pass_()
    assert p.runway.deletes == []
    [failed] = await p.events("failed")
    assert (failed["errorCode"], failed["runwayFailureCode"]) == ("runway_failed", "ASSET.INVALID")


async def test_time_throttled_at_runway_does_not_count_towards_the_deadline(
    make_poller: Make,
) -> None:
    p = make_poller(deadline_s=120, throttled_deadline_s=3600)
    await p.submit("t1")
    p.runway.set("t1", "THROTTLED")
    for _ in range(100):  # ten minutes of THROTTLED, five times the deadline
        p.clock.advance(max(0.0, await p.due_in("t1")))
        await p.pass_()
        if p.runway.deletes or (await p.row("t1"))["last_poll_s"] > 600:
            break
    assert p.runway.deletes == []
    p.runway.set("t1", "RUNNING", progress=0.5)  # admitted: the deadline's clock starts now
    p.clock.advance(await p.due_in("t1"))
    await p.pass_()
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    p.clock.advance(await p.due_in("t1"))
    await p.pass_()
    assert p.runway.deletes == []
    assert len(await p.events("video-ready")) == 1
    assert await p.events("failed") == []


async def test_a_task_throttled_past_its_own_bound_is_cancelled_and_fails(
    make_poller: Make,
) -> None:
    p = make_poller(deadline_s=120, throttled_deadline_s=300)
    await p.submit("t1")
    p.runway.set("t1", "THROTTLED")
    for _ in range(100):
        p.clock.advance(max(0.0, await p.due_in("t1")))
        await p.pass_()
        if p.runway.deletes:
            break
    assert p.runway.deletes == ["t1"]
    [failed] = await p.events("failed")
    assert failed["errorCode"] == "runway_timeout"
    assert "THROTTLED" in failed["errorMessage"]
    assert (p.clock.now - (await p.row("t1"))["submitted_at"]).total_seconds() >= 300


# -- defect: a cancel could lose a race with TaskSubmitted or with a poll --------------------------


class GatedUnitOfWork(UnitOfWork):
    """A unit of work whose commit waits for ``gate`` (after saying so on ``paused``)."""

    def __init__(self, sessions: Any, gate: asyncio.Event, paused: asyncio.Event) -> None:
        super().__init__(sessions, source="/vidgen/poller")
        self._gate, self._paused = gate, paused

    async def commit(self) -> None:
        self._paused.set()
        await self._gate.wait()
        await super().commit()


async def lock_waiters(p: Any) -> int:
    async with p.sessions() as s:
        result = await run_sql(
            s, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        return int(result.scalar_one())


@pytest.mark.parametrize("first", ["submitted", "cancel"])
async def test_a_cancel_racing_task_submitted_in_another_replica_wins(
    make_poller: Make, first: str
) -> None:
    """Two replicas handle the two events at the same moment (READ COMMITTED): the one that
    started first is held just before its commit while the other runs."""
    a, b = make_poller(), make_poller()
    gate, paused = asyncio.Event(), asyncio.Event()
    slow = PollerHandlers(
        lambda: GatedUnitOfWork(a.sessions, gate, paused),
        a.book,
        a.settings,
        wake=lambda: None,
        clock=a.clock,
    )
    submitted = Envelope(
        data=TaskSubmitted(
            generation_id="g1",
            user_id="u1",
            runway_task_id="t1",
            model="gen4_turbo",
            duration=5,
            submitted_at=a.clock.now,
        ),
        source="/test",
    )
    cancelled = Envelope(data=cancel("g1"), source="/test")
    if first == "submitted":
        held = asyncio.create_task(slow.on_task_submitted(submitted))
        other = b.handlers.on_cancel_requested
        other_event: Envelope[Any] = cancelled
    else:
        held = asyncio.create_task(slow.on_cancel_requested(cancelled))
        other, other_event = b.handlers.on_task_submitted, submitted
    await wait_until(paused.is_set, within=10, what="the first handler to reach its commit")
    racing = asyncio.create_task(other(other_event))

    async def finished_or_waiting() -> bool:
        return racing.done() or await lock_waiters(a) > 0

    await wait_until(finished_or_waiting, within=10, what="the second handler to run or wait")
    gate.set()
    await asyncio.gather(held, racing)

    a.runway.set("t1", "RUNNING", progress=0.5)
    a.clock.advance(30)
    await a.pass_()
    assert a.runway.deletes == ["t1"]
    [event] = await a.events("cancelled")
    assert event["runwayTaskId"] == "t1"
    assert await a.events("video-ready") == []


async def test_a_cancel_handled_while_a_poll_is_in_flight_wins_over_its_result(
    make_poller: Make,
) -> None:
    p = make_poller()
    await p.submit("t1", gid="g1")
    p.clock.advance(30)
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    answered, resume = asyncio.Event(), asyncio.Event()
    retrieve = p.runway.retrieve

    async def slow_retrieve(task_id: str) -> Any:
        view = await retrieve(task_id)
        answered.set()
        await resume.wait()  # the answer is on its way back while the user cancels
        return view

    p.runway.retrieve = slow_retrieve  # type: ignore[method-assign]
    assert await p.tracker.run_once() == 1
    await wait_until(answered.is_set, within=10, what="the poll to be answered")
    await p.deliver(cancel("g1"))
    resume.set()
    await p.tracker.idle()
    p.runway.retrieve = retrieve  # type: ignore[method-assign]
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    assert await p.events("video-ready") == []
    assert len(await p.events("cancelled")) == 1


async def test_a_claimed_row_whose_generation_was_cancelled_is_deleted_not_polled(
    make_poller: Make,
) -> None:
    """A tombstone without the row's flag (as a row tracked by a dead-letter hook has)."""
    p = make_poller()
    await p.submit("t1", gid="g1")
    async with p.sessions() as s:
        await run_sql(s, "INSERT INTO poller_cancels VALUES ('g1', now())")
        await s.commit()
    p.runway.set("t1", "RUNNING", progress=0.5)
    p.clock.advance(30)
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    assert p.runway.retrieves["t1"] == 2  # before and after the delete, for the cost only
    cancelled = await p.events("cancelled")
    assert len(cancelled) == 1
    assert cancelled[0]["costCredits"] == 0


async def test_a_cancelled_task_carries_what_runway_charged_for_it(make_poller: Make) -> None:
    """Cancelled while running, a task is charged: the cancel says so, for the ledger."""
    p = make_poller()
    await p.submit("t1", gid="g1")
    async with p.sessions() as s:
        await run_sql(s, "INSERT INTO poller_cancels VALUES ('g1', now())")
        await s.commit()
    p.runway.set("t1", "RUNNING", progress=0.5, estimated_cost_credits=25)
    p.clock.advance(30)
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    cancelled = await p.events("cancelled")
    assert [c["costCredits"] for c in cancelled] == [25]


async def test_a_cancel_that_finds_the_task_succeeded_carries_its_cost(make_poller: Make) -> None:
    """Deleting a finished task forgets it at Runway: its cost is read before the delete."""
    p = make_poller()
    await p.submit("t1", gid="g1")
    async with p.sessions() as s:
        await run_sql(s, "INSERT INTO poller_cancels VALUES ('g1', now())")
        await s.commit()
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1",), cost_credits=25)
    p.clock.advance(30)
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    assert p.runway.retrieves["t1"] == 1
    assert [c["costCredits"] for c in await p.events("cancelled")] == [25]


async def test_a_task_runway_never_answers_about_ends_after_its_bound(make_poller: Make) -> None:
    """Active and refresh rows alike: asked again with backoff, then failed, not for ever."""
    p = make_poller(unanswered_s=600, retry_cap_s=30)
    await p.submit("t1", gid="g1")
    p.runway.set("t2", "SUCCEEDED", output=("https://out/2",), cost_credits=25)
    await p.deliver(
        VideoUrlExpired(
            generation_id="g2", user_id="u1", runway_task_id="t2", reported_at=p.clock.now
        )
    )
    for task_id in ("t1", "t2"):
        p.runway.tasks[task_id] = Classified(Verdict.RETRY, "runway_unavailable", "503")
    for _ in range(200):
        p.clock.advance(max(0.0, min(await p.due_in("t1"), await p.due_in("t2"))))
        await p.pass_()
        if len(await p.events("failed")) == 2:
            break
    failures = await p.events("failed")
    assert sorted(f["runwayTaskId"] for f in failures) == ["t1", "t2"]
    assert {f["errorCode"] for f in failures} == {"runway_unreachable"}
    assert all("503" in f["errorMessage"] for f in failures)
    assert p.metrics.unanswered._value.get() == 2
    assert p.runway.deletes == []  # its output, if any, is left at Runway
