"""Runway's limits and faults, end to end: throttling, 429 storms, lost create responses."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from vidgen_common.events import GenerationFailed, TaskProgressed, TaskSubmitted, VideoReady
from vidgen_testing import unique

pytestmark = pytest.mark.integration

Stack = Any  # conftest's Stack and EventTap (test modules cannot import conftest)
Tap = Any


async def test_throttled_tasks_and_the_budget(stack: Stack, tap: Tap, make_request: Any) -> None:
    # Runway runs one gen4_turbo at a time (the others wait THROTTLED at Runway); our own
    # budget keeps veo3.1_fast tasks here, one at a time, so Runway never throttles them.
    # A gen4_turbo task lasts 4 s, so the three overlap at Runway even when a loaded machine
    # sends their creates seconds apart (with 1 s the first could end before the second came).
    await stack.sim.set_scenario(
        {
            "durations": {"gen4_turbo": {"median_s": 4.0}, "veo3.1_fast": {"median_s": 1.0}},
            "org": {"models": {"gen4_turbo": {"max_concurrent": 1}}},
        }
    )
    await stack.generator(model_budgets={"veo3.1_fast": 1})
    await stack.poller(
        duration_priors_s={"gen4_turbo": 4.0, "veo3.1_fast": 1.0},
        schedule={"throttled_interval_s": 0.5, "throttled_max_interval_s": 1.0},
    )
    turbo = [unique("turbo-") for _ in range(3)]
    veo = [unique("veo-") for _ in range(3)]
    await stack.publish(*(make_request(g) for g in turbo))
    await stack.publish(*(make_request(g, model="veo3.1_fast", duration=4) for g in veo))
    for gid in turbo + veo:
        await tap.wait_for(VideoReady, gid)
    statuses = {p.runway_status for g in turbo for p in tap.of(TaskProgressed, g)}
    assert "THROTTLED" in statuses
    assert all(p.runway_status != "THROTTLED" for g in veo for p in tap.of(TaskProgressed, g))
    submitted = sorted((tap.of(TaskSubmitted, g)[0].submitted_at, g) for g in veo)
    ready = {g: tap.of(VideoReady, g)[0].fetched_at for g in veo}
    for (_, first), (second_at, _) in itertools.pairwise(submitted):
        assert second_at >= ready[first]  # the next veo task waited for the previous one
    assert (await stack.counters())["creates_accepted"] == 6


async def test_a_429_storm_delays_but_loses_nothing(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario(
        {"rate_limit": {"next_n": 8, "retry_after_s": 0.3, "endpoints": ["create", "retrieve"]}}
    )
    await stack.generator()
    await stack.poller()
    gids = [unique("g-") for _ in range(4)]
    await stack.publish(*(make_request(g) for g in gids))
    for gid in gids:
        await tap.wait_for(VideoReady, gid)
    counters = await stack.counters()
    assert counters["faults"]["rate_limit"] == 8
    assert counters["creates_accepted"] == 4  # no create was ever doubled
    assert counters["calls"]["create"]["200"] == 4
    assert tap.of(GenerationFailed) == []


@pytest.mark.parametrize("mode", ["drop", "hang"])
async def test_a_lost_create_response_never_makes_a_second_task(
    stack: Stack, tap: Tap, make_request: Any, mode: str
) -> None:
    await stack.sim.set_scenario({"lost_create": {"next_n": 1, "mode": mode, "hang_s": 30}})
    await stack.generator(runway=stack.runway(runway_timeout_s=1.0))
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.stage, failed.error_code) == ("generator", "submission_unknown")
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1  # Runway did create it: we must not pay twice
    assert counters["calls"]["create"] == {"lost": 1}
    assert tap.of(TaskSubmitted, gid) == []


async def test_the_resubmit_policy_recovers_a_lost_create(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario({"lost_create": {"next_n": 1, "mode": "drop"}})
    await stack.generator(unknown_submission_policy="resubmit")
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    await tap.wait_for(VideoReady, gid)
    counters = await stack.counters()
    assert counters["creates_accepted"] == 2  # the documented price of this policy
    assert len(tap.of(TaskSubmitted, gid)) == 1


@pytest.mark.parametrize("mode", ["500", "504", "broken_body"])
async def test_an_error_answered_after_the_task_was_created_is_never_sent_again(
    stack: Stack, tap: Tap, make_request: Any, mode: str
) -> None:
    await stack.sim.set_scenario({"create_then_error": {"next_n": 1, "mode": mode}})
    await stack.generator()
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.stage, failed.error_code) == ("generator", "submission_unknown")
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1  # Runway created and charged it: never twice
    assert counters["faults"] == {f"create_then_error_{mode}": 1}
    assert tap.of(TaskSubmitted, gid) == []


async def test_a_request_that_cannot_be_handled_ends_failed_after_its_dead_letter(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.generator()
    gid = unique("g-")
    # PostgreSQL refuses text holding a NUL: the handler fails the same way every time.
    await stack.publish(make_request(gid, prompt="a lake\x00at night"))
    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.stage, failed.error_code) == ("generator", "event_dead_lettered")
    assert "dead-lettered" in failed.error_message
    assert (await stack.counters())["creates_accepted"] == 0
