"""A task id Runway returned is never forgotten while the process lives (real PostgreSQL).

The intents here are given up the way another replica's sweep gives them up, while the create
is in flight (a hook in the fake Runway's create), or left by a replica that died.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from vidgen_common.db import run_sql
from vidgen_common.uow import UnitOfWork
from vidgen_runway.verdicts import Verdict

pytestmark = pytest.mark.integration

Make = Any


async def sql(gen: Any, query: str, **params: Any) -> list[Any]:
    async with gen.sessions() as s:
        result = await run_sql(s, query, params)
        rows = list(result.all()) if result.returns_rows else []
        await s.commit()
        return rows


def during_create(gen: Any, action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` while the next create is in flight (after Runway made the task)."""
    original = gen.runway.create

    async def create(request: Any) -> str:
        gen.runway.create = original
        task_id: str = await original(request)
        await action()
        return task_id

    gen.runway.create = create


def metric(counter: Any, *labels: str) -> float:
    value: float = (counter.labels(*labels) if labels else counter)._value.get()
    return value


async def test_a_live_create_is_not_given_up_whatever_the_replicas_clocks_say(
    make_generator: Make, request_event: Any
) -> None:
    a, b = make_generator(), make_generator()
    await a.deliver(request_event("g1"))

    async def other_replica_sweeps_with_a_clock_a_day_ahead() -> None:
        a.clock.advance(86_400)  # the fake clock is shared by both replicas
        await b.submitter.sweep()

    during_create(a, other_replica_sweeps_with_a_clock_a_day_ahead)
    await a.pass_()
    [submitted] = await a.events("task-submitted")
    assert submitted["runwayTaskId"] == "task-1"
    assert await a.events("failed") == []


async def test_a_replica_that_stopped_heart_beating_has_its_intents_follow_the_policy(
    make_generator: Make, request_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_generator(), make_generator(instance_dead_after_s=30)
    await a.deliver(request_event("g1"))
    a.runway.script = ["task-lost"]
    lost = asyncio.Event()

    async def die() -> None:  # the process of `a` is killed -9 right after the create
        lost.set()
        await asyncio.Event().wait()

    during_create(a, die)
    run = asyncio.create_task(a.pass_())
    await asyncio.wait_for(lost.wait(), 10)
    run.cancel()
    await b.pass_()
    assert await b.events("failed") == []  # the owner's heartbeat is fresh: a live create
    await sql(a, "UPDATE generator_instances SET last_seen = now() - interval '31 seconds'")
    with caplog.at_level(logging.ERROR):
        await b.pass_()
    [failed] = await b.events("failed")
    assert failed["errorCode"] == "submission_unknown"
    assert "died before recording" in failed["errorMessage"]
    assert metric(b.metrics.orphaned_creates) == 1
    assert metric(b.metrics.submission_unknown, "owner_died", "fail") == 1
    assert any("g1" in r.getMessage() and "orphaned" in r.getMessage() for r in caplog.records)
    assert len(a.runway.creates) == 1


async def test_an_intent_of_an_older_version_waits_for_the_absolute_bound(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(intent_stale_s=600)
    await gen.deliver(request_event("g1"))
    await sql(
        gen, "UPDATE submissions SET state = 'intent', claim_token = 'old', intent_at = now()"
    )
    await gen.pass_()
    assert await gen.events("failed") == []
    await sql(gen, "UPDATE submissions SET intent_at = now() - interval '601 seconds'")
    await gen.pass_()
    [failed] = await gen.events("failed")
    assert failed["errorCode"] == "submission_unknown"
    assert metric(gen.metrics.submission_unknown, "stale_intent", "fail") == 1
    assert gen.runway.creates == []


async def test_an_intent_of_this_replica_that_no_create_stands_for_follows_the_policy(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    me = gen.liveness.instance_id
    await sql(
        gen,
        "UPDATE submissions SET state = 'intent', claim_token = 't', owner = :me, "
        "intent_at = now()",
        me=me,
    )
    await gen.pass_()
    [failed] = await gen.events("failed")
    assert failed["errorCode"] == "submission_unknown"
    assert metric(gen.metrics.submission_unknown, "abandoned", "fail") == 1


async def test_a_task_id_that_arrives_after_a_resubmission_was_decided_is_recorded_not_doubled(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(unknown_submission_policy="resubmit")
    await gen.deliver(request_event("g1"))

    async def another_replica_gave_it_up() -> None:  # the resubmit policy puts it back
        await sql(gen, "UPDATE submissions SET state = 'pending', claim_token = NULL")

    during_create(gen, another_replica_gave_it_up)
    await gen.pass_()
    gen.clock.advance(600)
    await gen.pass_()
    assert len(gen.runway.creates) == 1  # no second create for the same generation
    [submitted] = await gen.events("task-submitted")
    assert submitted["runwayTaskId"] == "task-1"
    [row] = await gen.rows()
    assert (row["state"], row["runway_task_id"]) == ("submitted", "task-1")
    assert metric(gen.metrics.late_tasks, "adopted") == 1


async def test_a_task_id_for_a_generation_already_failed_is_cancelled_at_runway_and_reported(
    make_generator: Make, request_event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))

    async def another_replica_failed_it() -> None:
        await sql(gen, "UPDATE submissions SET state = 'failed', claim_token = NULL")

    during_create(gen, another_replica_failed_it)
    with caplog.at_level(logging.ERROR):
        await gen.pass_()
    assert gen.runway.cancels == ["task-1"]
    assert await gen.events("task-submitted") == []
    rows = await sql(gen, "SELECT runway_task_id, generation_id, reason, outcome FROM late_tasks")
    assert [tuple(r) for r in rows] == [("task-1", "g1", "failed", "cancelled")]
    assert metric(gen.metrics.late_tasks, "cancelled") == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("task-1" in m and "g1" in m for m in errors)


async def test_a_late_task_whose_cancel_fails_is_retried_then_reported(
    make_generator: Make, request_event: Any, verdict: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    gen.runway.cancel_script = [verdict(Verdict.RETRY, "runway_unavailable", "busy")] * 20

    async def cancelled_meanwhile() -> None:
        await sql(gen, "UPDATE submissions SET state = 'cancelled', claim_token = NULL")

    during_create(gen, cancelled_meanwhile)
    await gen.pass_()
    assert [r[0] for r in await sql(gen, "SELECT outcome FROM late_tasks")] == ["to_cancel"]
    for _ in range(12):  # each sweep retries a due cancel; make it due each time
        await sql(gen, "UPDATE late_tasks SET updated_at = now() - interval '1 hour'")
        await gen.pass_()
    rows = await sql(gen, "SELECT outcome, tries FROM late_tasks")
    assert [tuple(r) for r in rows] == [("cancel_failed", 10)]
    assert len(gen.runway.cancels) == 10
    assert metric(gen.metrics.late_tasks, "cancel_failed") == 1


class _FlakyUnitOfWork(UnitOfWork):
    """The database refuses connections while ``down`` is set (as during a restart)."""

    def __init__(self, sessions: Any, down: Callable[[], bool]) -> None:
        super().__init__(sessions, source="/vidgen/generator")
        self._down = down

    async def __aenter__(self) -> UnitOfWork:
        if self._down():
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 15432)")
        return await super().__aenter__()


async def test_the_recording_insists_for_as_long_as_the_database_is_away(
    make_generator: Make, request_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = make_generator(record_retry_cap_s=0.01)
    await gen.deliver(request_event("g1"))
    refused = 0

    def down() -> bool:
        nonlocal refused
        if outage.is_set() and refused < 40:  # far more tries than any fixed budget
            refused += 1
            return True
        return False

    outage = asyncio.Event()
    sessions = gen.sessions
    recorder = gen.submitter._creator.recorder
    monkeypatch.setattr(recorder, "_uow", lambda: _FlakyUnitOfWork(sessions, down))

    async def database_goes_away() -> None:
        outage.set()

    during_create(gen, database_goes_away)
    await gen.pass_()
    assert refused == 40
    [submitted] = await gen.events("task-submitted")
    assert submitted["runwayTaskId"] == "task-1"
    assert gen.runway.cancels == []


async def test_stopping_sends_nothing_new_and_waits_for_the_create_in_flight(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(max_concurrent_submissions=1)
    await gen.deliver(request_event("g1"))
    await gen.deliver(request_event("g2"))
    in_create, release = asyncio.Event(), asyncio.Event()
    original = gen.runway.create

    async def slow_create(request: Any) -> str:
        in_create.set()
        await release.wait()
        return await original(request)

    gen.runway.create = slow_create  # type: ignore[method-assign]
    await gen.submitter.run_once()  # g1 is being created
    await asyncio.wait_for(in_create.wait(), 10)
    drain = asyncio.create_task(gen.submitter.drain())
    claimed = await gen.submitter.claim()
    assert claimed == []  # stopping: g2 is not claimed
    await asyncio.sleep(0)
    assert not drain.done()
    release.set()
    await asyncio.wait_for(drain, 10)
    states = {r["generation_id"]: r["state"] for r in await gen.rows()}
    assert states == {"g1": "submitted", "g2": "pending"}
    assert len(await gen.events("task-submitted")) == 1
    me = gen.liveness.instance_id
    assert await sql(gen, "SELECT 1 FROM generator_instances WHERE instance_id = :i", i=me) == []


async def test_a_row_claimed_before_the_stop_goes_back_to_pending(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    [(row, token)] = await gen.submitter.claim()
    await gen.submitter.drain()  # the stop arrives while the image is prepared
    await gen.submitter._creator.submit(row, token)
    assert gen.runway.creates == []
    [r] = await gen.rows()
    assert (r["state"], r["claim_token"]) == ("pending", None)


async def test_a_submission_that_waits_too_long_says_why(
    make_generator: Make, request_event: Any, caplog: pytest.LogCaptureFixture, verdict: Any
) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 1}, stall_warn_s=600)
    # one create per pass: concurrent creates would take the script's answers in any order
    gen.runway.script = ["task-1"]
    await gen.deliver(request_event("g1"))
    await gen.pass_()  # g1 is at Runway (the gen4_turbo budget is full)
    gen.runway.script = [verdict(Verdict.RETRY, "runway_unavailable", "busy")]
    await gen.deliver(request_event("g2", model="gen4.5"))
    await gen.pass_()  # g2 is deferred
    await gen.deliver(request_event("g3"))
    gen.clock.advance(601)
    gen.runway.script = [verdict(Verdict.RETRY, "runway_unavailable", "busy")]
    with caplog.at_level(logging.WARNING):
        await gen.pass_()  # g3 is held back by the budget; g2 is tried and deferred again
        await gen.pass_()  # now g2 waits for its retry
    lines = [r.getMessage() for r in caplog.records if "has waited over 600 s" in r.getMessage()]
    assert any("g3/1" in m and "gen4_turbo budget is full" in m for m in lines), lines
    assert any("g2/1" in m and "retry is due" in m and "runway_unavailable" in m for m in lines)
    assert len(lines) == 2
    assert gen.metrics.stalled._value.get() == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await gen.pass_()  # logged once per stall_warn_s, not on every pass
    assert not [r for r in caplog.records if "has waited over" in r.getMessage()]


async def test_a_429_answered_while_the_database_is_away_is_still_retried_later(
    make_generator: Make, request_event: Any, monkeypatch: pytest.MonkeyPatch, verdict: Any
) -> None:
    gen = make_generator(record_retry_cap_s=0.01)
    await gen.deliver(request_event("g1"))
    gen.runway.script = [verdict(Verdict.RETRY, "runway_rate_limited", "slow down", 1.0)]
    refused = 0
    outage = asyncio.Event()

    def down() -> bool:
        nonlocal refused
        if outage.is_set() and refused < 10:
            refused += 1
            return True
        return False

    creator = gen.submitter._creator
    sessions = gen.sessions
    monkeypatch.setattr(creator, "_uow", lambda: _FlakyUnitOfWork(sessions, down))
    original = gen.runway.create

    async def create(request: Any) -> str:
        outage.set()  # the database goes away while Runway answers 429
        return await original(request)

    gen.runway.create = create  # type: ignore[method-assign]
    await gen.pass_()
    await gen.pass_()  # the replica's own sweep finds nothing to give up
    assert refused == 10
    [row] = await gen.rows()
    assert (row["state"], row["error_code"]) == ("pending", "runway_rate_limited")
    assert await gen.events("failed") == []
