"""Cancel, redelivery, restarts and replicas: never a second Runway task (the simulator's
counters say so), and every generation ends exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from vidgen_common.events import (
    Envelope,
    GenerationCancelled,
    GenerationFailed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

Stack = Any  # conftest's Stack and EventTap (test modules cannot import conftest)
Tap = Any


async def test_cancel_before_submission_creates_nothing(
    stack: Stack, tap: Tap, make_request: Any, make_cancel: Any
) -> None:
    await stack.generator(model_budgets={"veo3.1": 0})  # veo3.1 creates wait for a free slot
    await stack.poller()
    waiting, early = unique("waiting-"), unique("early-")
    await stack.publish(make_request(waiting, model="veo3.1", duration=4))
    await stack.publish(make_cancel(early))  # this cancel overtakes its request:
    await wait_until(  # (events on two topics have no order: make sure it is handled first)
        lambda: stack.count(stack.generator_schema, "generator_cancels", early), what="cancel"
    )
    await stack.publish(make_request(early))
    await stack.publish(make_cancel(waiting))
    for gid in (waiting, early):
        [cancelled] = await tap.wait_for(GenerationCancelled, gid)
        assert (cancelled.stage, cancelled.runway_task_id) == ("generator", None)
    assert (await stack.counters())["creates_accepted"] == 0


async def test_cancel_after_submission_deletes_the_task_at_runway(
    stack: Stack, tap: Tap, make_request: Any, make_cancel: Any
) -> None:
    await stack.sim.set_scenario({"durations": {"gen4_turbo": {"median_s": 60}}})
    await stack.generator()
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    [submitted] = await tap.wait_for(TaskSubmitted, gid)
    await stack.publish(make_cancel(gid))
    [cancelled] = await tap.wait_for(GenerationCancelled, gid)
    assert (cancelled.stage, cancelled.runway_task_id) == ("poller", submitted.runway_task_id)
    counters = await stack.counters()
    assert counters["final_statuses"] == {"CANCELLED": 1}
    assert counters["calls"]["delete"] == {"204": 1}
    assert tap.of(VideoReady, gid) == []


async def test_redelivery_and_restarts_mid_flight_make_no_second_task(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario({"durations": {"gen4_turbo": {"median_s": 3.0}}})
    generator = await stack.generator()
    poller = await stack.poller(duration_priors_s={"gen4_turbo": 3.0})
    gid = unique("g-")
    envelope: Envelope[Any] = Envelope(data=make_request(gid), source="/vidgen/gateway")
    await stack.publish(envelope=envelope)
    await stack.publish(envelope=envelope)  # redelivered
    [submitted] = await tap.wait_for(TaskSubmitted, gid)
    # Both services stop while the task runs, then start again (new processes' state: the DB).
    await stack.stop(generator)
    await stack.stop(poller)
    await stack.generator()
    await stack.poller(duration_priors_s={"gen4_turbo": 3.0})
    await stack.publish(envelope=envelope)  # and once more after the restart
    [ready] = await tap.wait_for(VideoReady, gid)
    assert ready.runway_task_id == submitted.runway_task_id
    assert len(tap.of(TaskSubmitted, gid)) == 1
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1


async def test_two_replicas_of_each_service_share_the_work(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario(
        {
            "durations": {"gen4_turbo": {"median_s": 1.5, "sigma": 0.3}},
            "org": {"models": {"gen4_turbo": {"max_concurrent": None}}},
        }
    )
    generators = [await stack.generator(max_concurrent_submissions=2) for _ in range(2)]
    pollers = [
        await stack.poller(duration_priors_s={"gen4_turbo": 1.5}, max_concurrent_polls=3)
        for _ in range(2)
    ]
    gids = [unique("g-") for _ in range(16)]
    await stack.publish(*(make_request(g) for g in gids))
    for gid in gids:
        await tap.wait_for(VideoReady, gid)
    # The outboxes are the source of what was ever emitted (the tap may not have it all yet).
    submitted = await stack.outbox(stack.generator_schema, TaskSubmitted)
    ready = await stack.outbox(stack.poller_schema, VideoReady)
    assert sorted(submitted) == sorted(gids)
    assert sorted(ready) == sorted(gids)
    assert tap.of(GenerationFailed) == []
    counters = await stack.counters()
    assert counters["creates_accepted"] == 16
    created = [total(g.app.metrics.submitted) for g in generators]
    assert sum(created) == 16
    assert all(n > 0 for n in created), created  # both generators created tasks
    polls = [total(p.app.metrics.polls) for p in pollers]
    assert all(n > 0 for n in polls), polls  # both pollers polled
    assert sum(polls) == sum(counters["retrieves_per_task"].values())


def total(counter: Any) -> float:
    """Sum of a prometheus counter over all its labels."""
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
