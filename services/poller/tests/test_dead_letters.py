"""The poller's dead-letter hook and redeliveries, on real PostgreSQL with a fake Runway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.events import Envelope, GenerationCancelRequested, TaskSubmitted
from vidgen_common.transient import is_transient

pytestmark = pytest.mark.integration

Make = Any  # conftest's MakePoller


def submitted(p: Any, task_id: str = "t1", gid: str = "g1", **fields: Any) -> Envelope[Any]:
    data = TaskSubmitted(
        generation_id=gid,
        user_id="u1",
        runway_task_id=task_id,
        model="gen4_turbo",
        duration=fields.pop("duration", 5),
        submitted_at=p.clock.now,
        **fields,
    )
    return Envelope(data=data, source="/vidgen/generator")


async def handle(p: Any, envelope: Envelope[Any]) -> None:
    handler = {
        "generation.task-submitted": p.handlers.on_task_submitted,
        "generation.cancel-requested": p.handlers.on_cancel_requested,
    }[envelope.data.name]
    await handler(envelope)


async def tracked(p: Any) -> int:
    from vidgen_common.db import run_sql

    async with p.sessions() as s:
        return int((await run_sql(s, "SELECT count(*) FROM tracked_tasks")).scalar_one())


async def test_a_task_submitted_delivered_twice_and_after_a_restart_has_one_effect(
    make_poller: Make,
) -> None:
    p = make_poller()
    envelope = submitted(p)
    await handle(p, envelope)
    await handle(p, envelope)  # redelivered (the offset commit was lost)
    p2 = make_poller()  # "after a crash": a new process, the same database
    await handle(p2, envelope)
    await handle(p2, submitted(p))  # the same task under another event id (a re-publish)
    assert await tracked(p) == 1
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    p.clock.advance(30)
    await p2.pass_()
    await p.pass_()
    assert p.runway.retrieves["t1"] == 1
    assert len(await p.events("video-ready")) == 1
    assert len(await p.events()) == 1


async def test_a_dead_lettered_task_submitted_is_tracked_anyway_and_a_replay_is_harmless(
    make_poller: Make,
) -> None:
    p = make_poller()
    envelope = submitted(p)
    await p.dead_letters(envelope, "ValueError('a bug')")
    await p.dead_letters(envelope, "ValueError('a bug')")  # dead-lettered twice
    p.runway.set("t1", "SUCCEEDED", output=("https://out/1.mp4",), cost_credits=25)
    await p.pass_()  # due at once
    [ready] = await p.events("video-ready")
    assert ready["runwayTaskId"] == "t1"
    await handle(p, envelope)  # vidgen-dlq replay
    p.clock.advance(3600)
    await p.pass_()
    assert len(await p.events()) == 1
    assert p.runway.retrieves["t1"] == 1


async def test_a_dead_lettered_task_submitted_that_cannot_be_tracked_fails_explained(
    make_poller: Make,
) -> None:
    """A poison event: its duration does not fit the column, so nothing can track it."""
    p = make_poller()
    poison = submitted(p, duration=10**12)
    with pytest.raises(Exception, match="out of int32 range") as raised:
        await handle(p, poison)
    assert not is_transient(raised.value)  # the consumer gives up on it: the DLQ, the hook
    await p.dead_letters(poison, "DataError('out of int32 range')")
    await p.dead_letters(poison, "DataError('out of int32 range')")
    [failed] = await p.events("failed")
    assert (failed["stage"], failed["errorCode"]) == ("poller", "event_dead_lettered")
    assert "t1" in failed["errorMessage"]
    assert "out of int32 range" in failed["errorMessage"]
    assert failed["runwayTaskId"] == "t1"
    await handle(p, poison)  # a replay: no-op
    # a later task of the same generation (a resubmission) is deleted, not revived
    await handle(p, submitted(p, task_id="t2", attempt=2))
    p.runway.set("t2", "RUNNING", progress=0.1)
    p.clock.advance(30)
    await p.pass_()
    assert p.runway.deletes == ["t2"]
    assert await p.events("video-ready") == []
    assert len(await p.events("failed")) == 1


async def test_a_dead_lettered_cancel_is_applied_by_the_hook(make_poller: Make) -> None:
    p = make_poller()
    await handle(p, submitted(p))
    p.runway.set("t1", "RUNNING", progress=0.1)
    cancel = Envelope(
        data=GenerationCancelRequested(
            generation_id="g1", user_id="u1", requested_at=datetime.now(UTC)
        ),
        source="/vidgen/gateway",
    )
    await p.dead_letters(cancel, "ValueError('a bug')")
    await handle(p, cancel)  # replay
    await p.pass_()
    assert p.runway.deletes == ["t1"]
    assert len(await p.events("cancelled")) == 1


async def test_a_poll_whose_replica_died_is_counted_and_polled_again(make_poller: Make) -> None:
    from vidgen_poller import store

    a, b = make_poller(claim_lease_s=30), make_poller(claim_lease_s=30)
    await handle(a, submitted(a))
    a.clock.advance(30)
    async with a.sessions() as s:
        await store.claim_due(s, a.clock.now, 10, 30)  # claimed; the replica dies
        await s.commit()
    a.runway.set("t1", "SUCCEEDED", output=("https://out",), cost_credits=25)
    a.clock.advance(31)
    assert await b.pass_() == 1
    assert b.metrics.leases_expired._value.get() == 1
    assert len(await b.events("video-ready")) == 1
