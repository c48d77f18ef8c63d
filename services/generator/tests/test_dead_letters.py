"""The generator's dead-letter hook: a dead-lettered event still ends its generation, and a
later replay of it is harmless (real PostgreSQL, fake Runway)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.events import Envelope, GenerationCancelRequested, TaskOutputRejected
from vidgen_common.uow import UnitOfWork
from vidgen_generator.dead_letters import DeadLetters

pytestmark = pytest.mark.integration

Make = Any


def _hook(gen: Any) -> DeadLetters:
    return DeadLetters(lambda: UnitOfWork(gen.sessions, source="/vidgen/generator"), gen.clock)


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(
        generation_id=gid, user_id="u1", requested_at=datetime.now(UTC)
    )


def rejected(gid: str, task_id: str, attempt: int) -> TaskOutputRejected:
    return TaskOutputRejected(
        generation_id=gid,
        user_id="u1",
        runway_task_id=task_id,
        attempt=attempt,
        failure="The output did not meet our quality standards.",
        failure_code="INTERNAL.BAD_OUTPUT.CODE01",
        cost_credits=4,
        rejected_at=datetime.now(UTC),
    )


async def test_a_dead_lettered_request_fails_and_its_replay_creates_nothing(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    hook = _hook(gen)
    env = Envelope(data=request_event("g1", prompt="a lake\x00at night"), source="/test")
    await hook.on_dead_letter(env, "DataError('invalid byte sequence')")
    [event] = await gen.events("failed")
    assert (event["errorCode"], event["stage"]) == ("event_dead_lettered", "generator")
    assert "invalid byte sequence" in event["errorMessage"]
    await hook.on_dead_letter(env, "again")  # a second dead letter: nothing new
    await gen.deliver(request_event("g1"), envelope_id=env.id)  # vidgen-dlq replay
    await gen.pass_()
    assert gen.runway.creates == []
    assert len(await gen.events("failed")) == 1
    assert [r["state"] for r in await gen.rows()] == ["failed"]


async def test_a_dead_lettered_request_after_a_cancel_ends_cancelled(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(cancel("g1"))
    await _hook(gen).on_dead_letter(Envelope(data=request_event("g1"), source="/t"), "boom")
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]
    assert await gen.events("failed") == []


async def test_a_dead_lettered_copy_of_a_request_already_handled_changes_nothing(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    await _hook(gen).on_dead_letter(Envelope(data=request_event("g1"), source="/t"), "boom")
    await gen.pass_()
    assert await gen.events("failed") == []
    assert len(await gen.events("task-submitted")) == 1


async def test_a_dead_lettered_cancel_still_cancels_what_it_can(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    hook = _hook(gen)
    await gen.deliver(request_event("g1"))
    await hook.on_dead_letter(Envelope(data=cancel("g1"), source="/t"), "boom")
    await hook.on_dead_letter(
        Envelope(data=cancel("g2"), source="/t"), "boom"
    )  # before its request
    await gen.deliver(request_event("g2"))
    await gen.pass_()
    assert gen.runway.creates == []
    assert sorted(e["generationId"] for e in await gen.events("cancelled")) == ["g1", "g2"]


async def test_a_dead_lettered_rejection_fails_and_its_replay_resubmits_nothing(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    hook = _hook(gen)
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    env = Envelope(data=rejected("g1", "task-1", 1), source="/t")
    await hook.on_dead_letter(env, "boom")
    await hook.on_dead_letter(env, "boom")
    [event] = await gen.events("failed")
    assert (event["errorCode"], event["runwayTaskId"], event["costCredits"]) == (
        "event_dead_lettered",
        "task-1",
        4,
    )
    await gen.deliver(env.data, envelope_id=env.id)  # replay
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    assert len(await gen.events("failed")) == 1
