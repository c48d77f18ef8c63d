"""The poller's bounds against the Runway simulator: a finished task always yields its video,
however late its TaskSubmitted; time THROTTLED in Runway's queue is not time running."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from runwayml import AsyncRunwayML

from runway_sim.testkit import data_uri, png_bytes
from vidgen_common.events import Envelope, GenerationFailed, TaskSubmitted, VideoReady
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

Stack = Any  # conftest's Stack and EventTap (test modules cannot import conftest)
Tap = Any


@pytest.fixture
async def runway(stack: Stack) -> AsyncIterator[AsyncRunwayML]:
    async with AsyncRunwayML(
        base_url=stack.sim.base_url, api_key=stack.sim.api_key, max_retries=0
    ) as client:
        yield client


async def create_task(runway: AsyncRunwayML) -> str:
    """A task created the way the generator creates one."""
    task = await runway.image_to_video.create(
        model="gen4_turbo",
        prompt_image=data_uri(png_bytes(160, 90)),
        prompt_text="a slow pan over a misty lake",
        ratio="1280:720",
        duration=5,
    )
    return task.id


def submitted(gid: str, task_id: str, at: datetime) -> TaskSubmitted:
    return TaskSubmitted(
        generation_id=gid,
        user_id="u1",
        runway_task_id=task_id,
        model="gen4_turbo",
        duration=5,
        submitted_at=at,
    )


async def outcome(tap: Tap, gid: str) -> None:
    await wait_until(
        lambda: tap.of(VideoReady, gid) or tap.of(GenerationFailed, gid),
        within=60,
        what=f"VideoReady or GenerationFailed for {gid}",
    )


async def retrieves(stack: Stack, task_id: str) -> int:
    return int((await stack.counters())["retrieves_per_task"].get(task_id, 0))


async def test_a_task_submitted_hours_late_yields_the_video_of_its_succeeded_task(
    stack: Stack, tap: Tap, runway: AsyncRunwayML
) -> None:
    """The poller was down, or a dead letter was replayed, long after the task was made."""
    task_id = await create_task(runway)

    async def succeeded() -> bool:
        return (await runway.tasks.retrieve(task_id)).status == "SUCCEEDED"

    await wait_until(succeeded, within=30, what="the task to succeed")
    gid = unique("late-")
    await stack.publish(submitted(gid, task_id, datetime.now(UTC) - timedelta(hours=2)))
    await stack.poller(deadline_s=900)

    await outcome(tap, gid)
    assert tap.of(GenerationFailed, gid) == []
    [ready] = tap.of(VideoReady, gid)
    assert ready.runway_task_id == task_id
    counters = await stack.counters()
    assert "delete" not in counters["calls"]
    assert (await runway.tasks.retrieve(task_id)).status == "SUCCEEDED"  # its output is kept


async def test_a_task_held_throttled_past_the_deadline_still_runs_and_yields_its_video(
    stack: Stack, tap: Tap, runway: AsyncRunwayML
) -> None:
    deadline_s = 3.0
    await stack.sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_concurrent": 0}}}})
    task_id = await create_task(runway)  # queued THROTTLED until a slot frees
    at = datetime.now(UTC)
    gid = unique("queued-")
    await stack.poller(
        deadline_s=deadline_s,
        throttled_deadline_s=600,
        schedule={"throttled_interval_s": 0.3, "throttled_max_interval_s": 0.5},
    )
    await stack.publish(submitted(gid, task_id, at))
    past = at.timestamp() + deadline_s + 1
    await wait_until(lambda: time.time() > past, within=30, what="the deadline to pass")
    seen = await retrieves(stack, task_id)

    async def polled_again() -> bool:
        return await retrieves(stack, task_id) > seen or bool(tap.of(GenerationFailed, gid))

    await wait_until(polled_again, within=30, what="a poll past the deadline")
    assert (await runway.tasks.retrieve(task_id)).status == "THROTTLED"
    await stack.sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_concurrent": 3}}}})

    await outcome(tap, gid)
    assert tap.of(GenerationFailed, gid) == []
    assert [r.runway_task_id for r in tap.of(VideoReady, gid)] == [task_id]
    assert "delete" not in (await stack.counters())["calls"]


async def test_a_task_throttled_past_its_own_bound_is_cancelled_refunded_and_fails(
    stack: Stack, tap: Tap, runway: AsyncRunwayML
) -> None:
    await stack.sim.set_scenario({"org": {"models": {"gen4_turbo": {"max_concurrent": 0}}}})
    task_id = await create_task(runway)
    gid = unique("stuck-")
    await stack.poller(
        throttled_deadline_s=2.0,
        schedule={"throttled_interval_s": 0.3, "throttled_max_interval_s": 0.5},
    )
    await stack.publish(submitted(gid, task_id, datetime.now(UTC)))

    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.stage, failed.error_code) == ("poller", "runway_timeout")
    assert "THROTTLED" in failed.error_message
    task = await runway.tasks.retrieve(task_id)
    assert task.status == "CANCELLED"
    counters = await stack.counters()
    assert counters["calls"]["delete"] == {"204": 1}
    assert counters["credits_charged"] == 0  # cancelled before it ran: refunded


async def test_a_poison_task_submitted_is_dead_lettered_and_its_generation_ends_explained(
    stack: Stack, tap: Tap
) -> None:
    """Through the real consumer: the DLQ, then the poller's hook, then a harmless replay."""
    gid = unique("poison-")
    poison = TaskSubmitted(
        generation_id=gid,
        user_id="u1",
        runway_task_id="task-that-cannot-be-stored",
        model="gen4_turbo",
        duration=10**12,  # does not fit the column: every try fails the same way
        submitted_at=datetime.now(UTC),
    )
    envelope: Envelope[Any] = Envelope(data=poison, source="/vidgen/generator")
    poller = await stack.poller()
    await stack.publish(envelope=envelope)
    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.stage, failed.error_code) == ("poller", "event_dead_lettered")
    assert failed.runway_task_id == "task-that-cannot-be-stored"

    def handled(outcome: str) -> float:
        group = poller.rt.consumers[0].group_id
        labels = {"consumer": group, "type": TaskSubmitted.event_type(), "outcome": outcome}
        value = poller.rt.metrics.registry.get_sample_value("vidgen_events_handled_total", labels)
        return float(value or 0)

    assert handled("dlq") == 1
    await stack.publish(envelope=envelope)  # vidgen-dlq replay: the inbox has it
    await wait_until(lambda: handled("ok") == 1, within=30, what="the replay to be handled")
    assert len(await stack.outbox(stack.poller_schema, GenerationFailed)) == 1
    assert handled("dlq") == 1
