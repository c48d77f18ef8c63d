"""Generator + poller against the simulator, PostgreSQL and Kafka: the happy path and failures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vidgen_common.events import (
    GenerationFailed,
    GenerationWaiting,
    TaskOutputRejected,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_testing import unique

pytestmark = pytest.mark.integration

Stack = Any  # conftest's Stack and EventTap (test modules cannot import conftest)
Tap = Any


async def test_a_generation_becomes_one_task_and_video_ready(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario({"durations": {"gen4_turbo": {"median_s": 2.0}}})
    await stack.generator()
    await stack.poller(duration_priors_s={"gen4_turbo": 2.0})
    gid = unique("g-")
    await stack.publish(make_request(gid))

    [ready] = await tap.wait_for(VideoReady, gid)
    [submitted] = tap.of(TaskSubmitted, gid)
    assert ready.runway_task_id == submitted.runway_task_id
    assert submitted.attempt == 1
    assert submitted.estimated_cost_credits == 25
    assert ready.cost_credits == 25
    assert ready.output_urls[0].startswith(stack.sim.base_url)
    assert ready.fetched_at >= submitted.submitted_at
    statuses = [p.runway_status for p in tap.of(TaskProgressed, gid)]
    assert set(statuses) <= {"PENDING", "RUNNING"}, statuses
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1
    retrieves = counters["retrieves_per_task"][ready.runway_task_id]
    # The SDK's loop would have taken 6 s to notice; ours polls near the end, not before.
    assert 1 <= retrieves <= 8, (retrieves, statuses)
    assert len(statuses) < retrieves  # progress is reported when it moves, not on every poll
    assert tap.of(GenerationFailed, gid) == []

    # Media found the URL expired: the poller asks Runway again for a fresh one.
    expired = VideoUrlExpired(
        generation_id=gid,
        user_id="u1",
        runway_task_id=ready.runway_task_id,
        reported_at=datetime.now(UTC),
    )
    await stack.publish(expired)
    _, fresh = await tap.wait_for(VideoReady, gid, count=2)
    assert fresh.fetched_at > ready.fetched_at
    assert fresh.output_urls != ready.output_urls  # signed anew
    assert (await stack.counters())["creates_accepted"] == 1


async def test_every_failure_kind_reaches_the_user_with_its_code_and_the_cap_waits(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario(
        {
            "moderation_words": ["forbidden"],
            "org": {"models": {"veo3.1_fast": {"max_daily": 0}}},
        }
    )
    await stack.generator()
    await stack.poller()
    moderated, invalid, capped = unique("mod-"), unique("bad-"), unique("cap-")
    await stack.publish(
        make_request(moderated, prompt="a forbidden lake"),
        make_request(invalid, ratio="999:1"),
        make_request(capped, model="veo3.1_fast", ratio="1280:720", duration=4),
    )
    [m] = await tap.wait_for(GenerationFailed, moderated)
    assert (m.stage, m.error_code) == ("poller", "moderation")
    assert m.runway_failure_code == "SAFETY.INPUT.TEXT"
    assert m.user_message
    assert m.error_message  # Runway's own text, kept for support
    [i] = await tap.wait_for(GenerationFailed, invalid)
    assert (i.stage, i.error_code) == ("generator", "runway_rejected")
    assert "ratio" in i.error_message
    # Runway's daily cap is not a failure: the generation waits until the cap should lift.
    [c] = await tap.wait_for(GenerationWaiting, capped)
    assert (c.reason, c.model) == ("daily_cap_reached", "veo3.1_fast")
    assert c.until is not None
    assert not tap.of(GenerationFailed, capped)
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1  # only the moderated prompt made a task
    assert counters["calls"]["create"].get("429") == 1  # the cap was not retried


async def test_a_wrong_key_fails_at_once(stack: Stack, tap: Tap, make_request: Any) -> None:
    await stack.generator(runway=stack.runway(runwayml_api_secret="key_wrong"))
    gid = unique("g-")
    await stack.publish(make_request(gid))
    [failed] = await tap.wait_for(GenerationFailed, gid)
    assert (failed.error_code, failed.error_message) == ("runway_auth", "Invalid API key.")
    assert (await stack.counters())["calls"]["create"] == {"401": 1}


async def test_bad_output_is_resubmitted_then_given_up(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario({"failure_rates": {"INTERNAL.BAD_OUTPUT.CODE01": 1.0}})
    await stack.generator(max_attempts=2)
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    [failed] = await tap.wait_for(GenerationFailed, gid)
    submitted = tap.of(TaskSubmitted, gid)
    assert [s.attempt for s in submitted] == [1, 2]
    assert [r.attempt for r in tap.of(TaskOutputRejected, gid)] == [1, 2]
    assert (failed.stage, failed.error_code) == ("generator", "runway_bad_output")
    assert failed.runway_failure_code == "INTERNAL.BAD_OUTPUT.CODE01"
    assert failed.cost_credits == 0  # Runway refunds failed tasks
    assert (await stack.counters())["creates_accepted"] == 2


async def test_bad_output_then_a_good_second_task(
    stack: Stack, tap: Tap, make_request: Any
) -> None:
    await stack.sim.set_scenario({"failure_rates": {"INTERNAL.BAD_OUTPUT.CODE01": 1.0}})
    await stack.generator(max_attempts=3)
    await stack.poller()
    gid = unique("g-")
    await stack.publish(make_request(gid))
    await tap.wait_for(TaskSubmitted, gid)
    await stack.sim.set_scenario({"failure_rates": {"INTERNAL.BAD_OUTPUT.CODE01": 0.0}})
    [ready] = await tap.wait_for(VideoReady, gid)
    submitted = tap.of(TaskSubmitted, gid)
    assert [s.attempt for s in submitted] == [1, 2]
    assert ready.runway_task_id == submitted[1].runway_task_id
    assert ready.cost_credits == 25
    assert tap.of(GenerationFailed, gid) == []
