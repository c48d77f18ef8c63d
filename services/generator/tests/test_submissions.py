"""The generator's exactly-once submission on real PostgreSQL, with a fake Runway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vidgen_common.events import (
    GenerationCancelRequested,
    TaskOutputRejected,
    VideoReady,
)
from vidgen_runway.verdicts import Verdict

pytestmark = pytest.mark.integration

Make = Any  # conftest's MakeGenerator (test modules cannot import conftest)


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(
        generation_id=gid, user_id="u1", requested_at=datetime.now(UTC)
    )


def rejected(gid: str, task_id: str, attempt: int, cost: int = 0) -> TaskOutputRejected:
    return TaskOutputRejected(
        generation_id=gid,
        user_id="u1",
        runway_task_id=task_id,
        attempt=attempt,
        failure="The output did not meet our quality standards.",
        failure_code="INTERNAL.BAD_OUTPUT.CODE01",
        cost_credits=cost,
        rejected_at=datetime.now(UTC),
    )


async def test_a_request_becomes_one_task_and_task_submitted(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    assert await gen.pass_() == 1

    assert len(gen.runway.creates) == 1
    create = gen.runway.creates[0]
    assert create.prompt_image.startswith("data:image/png;base64,")
    assert (create.model, create.ratio, create.duration) == ("gen4_turbo", "1280:720", 5)
    [event] = await gen.events("task-submitted")
    assert event["runwayTaskId"] == "task-1"
    assert event["attempt"] == 1
    assert event["estimatedCostCredits"] == 25
    [row] = await gen.rows()
    assert (row["state"], row["runway_task_id"]) == ("submitted", "task-1")
    assert await gen.pass_() == 0
    assert len(gen.runway.creates) == 1


async def test_redelivery_and_a_second_request_event_create_nothing_more(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    env = await gen.deliver(request_event("g1"))
    await gen.deliver(env.data, envelope_id=env.id)  # the same record again
    await gen.pass_()
    await gen.deliver(env.data, envelope_id=env.id)  # and after the task exists
    await gen.deliver(request_event("g1"))  # another event for the same generation
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    assert len(await gen.events("task-submitted")) == 1


async def test_two_replicas_create_each_task_once(make_generator: Make, request_event: Any) -> None:
    a, b = make_generator(), make_generator()
    gids = [f"g{i}" for i in range(12)]
    await asyncio.gather(*(a.deliver(request_event(g)) for g in gids))
    for _ in range(3):
        await asyncio.gather(a.pass_(), b.pass_())
    assert len(a.runway.creates) == 12  # the shared fake saw every create of both replicas
    submitted = await a.events("task-submitted")
    assert sorted(e["generationId"] for e in submitted) == sorted(gids)


async def test_rate_limit_defers_only_that_row_and_honours_retry_after(
    make_generator: Make, request_event: Any, verdict: Any
) -> None:
    gen = make_generator()
    gen.runway.script = [verdict(Verdict.RETRY, "runway_rate_limited", "slow down", 7.0)]
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    [row] = await gen.rows()
    assert row["state"] == "pending"
    assert row["error_code"] == "runway_rate_limited"
    wait = (row["retry_at"] - gen.clock.now).total_seconds()
    assert 7.0 <= wait <= 7.0 * 1.2 + 0.01
    # Runway asked the organisation to slow down: nothing is claimed before Retry-After ...
    await gen.deliver(request_event("g2"))
    assert await gen.pass_() == 0
    gen.clock.advance(3)
    assert await gen.pass_() == 0
    # ... then the other generation goes first, and the deferred one once it is due.
    gen.clock.advance(5)
    await gen.pass_()
    gen.clock.advance(2)
    await gen.pass_()
    assert len(gen.runway.creates) == 3
    assert {e["generationId"] for e in await gen.events("task-submitted")} == {"g1", "g2"}


async def test_server_errors_are_retried_then_given_up(
    make_generator: Make, request_event: Any, verdict: Any
) -> None:
    gen = make_generator(max_create_tries=3)
    gen.runway.script = [verdict(Verdict.RETRY, "runway_unavailable", "Service unavailable")] * 3
    await gen.deliver(request_event("g1"))
    for _ in range(3):
        await gen.pass_()
        gen.clock.advance(120)
    assert len(gen.runway.creates) == 3
    [failed] = await gen.events("failed")
    assert failed["errorCode"] == "runway_unavailable"
    assert "gave up after 3 tries" in failed["errorMessage"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("runway_rejected", "Validation of body failed: ratio: Invalid enum value"),
        ("runway_auth", "Invalid API key."),
    ],
)
async def test_permanent_errors_fail_at_once_with_runways_message(
    make_generator: Make, request_event: Any, verdict: Any, code: str, message: str
) -> None:
    gen = make_generator()
    gen.runway.script = [verdict(Verdict.PERMANENT, code, message)]
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    gen.clock.advance(600)
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    [failed] = await gen.events("failed")
    assert (failed["errorCode"], failed["errorMessage"], failed["stage"]) == (
        code,
        message,
        "generator",
    )


async def test_lost_answer_fails_without_a_second_create_by_default(
    make_generator: Make, request_event: Any, verdict: Any
) -> None:
    gen = make_generator()
    gen.runway.script = [verdict(Verdict.UNKNOWN, "runway_no_response", "Runway timed out")]
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    gen.clock.advance(600)
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    [failed] = await gen.events("failed")
    assert failed["errorCode"] == "submission_unknown"
    assert "not to pay twice" in failed["errorMessage"]
    sample = gen.metrics.submission_unknown.labels("no_response", "fail")._value.get()
    assert sample == 1


async def test_lost_answer_with_resubmit_policy_creates_again(
    make_generator: Make, request_event: Any, verdict: Any
) -> None:
    gen = make_generator(unknown_submission_policy="resubmit")
    gen.runway.script = [verdict(Verdict.UNKNOWN, "runway_no_response", "connection lost")]
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    gen.clock.advance(60)
    await gen.pass_()
    assert len(gen.runway.creates) == 2
    assert len(await gen.events("task-submitted")) == 1
    assert gen.metrics.submission_unknown.labels("no_response", "resubmit")._value.get() == 1


async def test_cancel_before_submission_cancels_without_runway(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    await gen.deliver(cancel("g1"))
    await gen.deliver(cancel("g2"))  # the cancel arrives before its request
    await gen.deliver(request_event("g2"))
    await gen.pass_()
    assert gen.runway.creates == []
    cancelled = await gen.events("cancelled")
    assert sorted(e["generationId"] for e in cancelled) == ["g1", "g2"]
    assert {e["stage"] for e in cancelled} == {"generator"}


async def test_cancel_while_creating_leaves_the_task_to_the_poller(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    original = gen.runway.create

    async def create_then_cancel(request: Any) -> str:
        await gen.deliver(cancel("g1"))  # arrives while the create is in flight
        return await original(request)

    gen.runway.create = create_then_cancel  # type: ignore[method-assign]
    await gen.pass_()
    assert len(await gen.events("task-submitted")) == 1  # the poller will delete the task
    assert await gen.events("cancelled") == []


async def test_budget_defers_creates_until_a_task_ends(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 1})
    for gid in ("g1", "g2", "g3"):
        await gen.deliver(request_event(gid))
    await gen.deliver(request_event("g4", model="gen4.5"))  # another model: its own budget
    await gen.pass_()
    assert sorted(c.model for c in gen.runway.creates) == ["gen4.5", "gen4_turbo"]
    assert gen.metrics.waiting_for_budget._value.get() == 2
    # which row was claimed first and which task id it got depend on the order of the
    # concurrent creates: end whichever gen4_turbo task is running
    ((running, task_id),) = [
        (r["generation_id"], r["runway_task_id"])
        for r in await gen.rows()
        if r["model"] == "gen4_turbo" and r["state"] == "submitted"
    ]
    await gen.deliver(
        VideoReady(
            generation_id=running,
            user_id="u1",
            runway_task_id=task_id,
            output_urls=["https://x"],
            fetched_at=datetime.now(UTC),
        )
    )
    await gen.pass_()
    assert len(gen.runway.creates) == 3


async def test_a_full_budget_puts_the_loop_to_sleep_until_a_task_ends(
    make_generator: Make, request_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog behind a full budget is not "due": the loop does not pass again every
    min_sleep_s (each pass is a sweep and a claim transaction) but waits for the wake of the
    task's end, and then claims at once."""
    from vidgen_generator import store

    gen = make_generator(model_budgets={"gen4_turbo": 1}, submit_poll_interval_s=5.0)
    for gid in ("g1", "g2", "g3"):
        await gen.deliver(request_event(gid))
    claims = 0
    real_due = store.due

    async def counting_due(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await real_due(*args, **kwargs)

    monkeypatch.setattr(store, "due", counting_due)
    stop = asyncio.Event()
    loop = asyncio.create_task(gen.submitter.run(stop))
    try:
        for _ in range(100):
            if gen.runway.creates:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert len(gen.runway.creates) == 1
        assert claims <= 2, f"{claims} claim passes while the budget was full"
        ((running, task_id),) = [
            (r["generation_id"], r["runway_task_id"])
            for r in await gen.rows()
            if r["state"] == "submitted"
        ]
        await gen.deliver(
            VideoReady(
                generation_id=running,
                user_id="u1",
                runway_task_id=task_id,
                output_urls=["https://x"],
                fetched_at=datetime.now(UTC),
            )
        )
        for _ in range(100):  # woken by the end: well before submit_poll_interval_s
            if len(gen.runway.creates) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(gen.runway.creates) == 2
    finally:
        stop.set()
        await loop


async def test_budget_from_the_organisation(make_generator: Make, request_event: Any) -> None:
    gen = make_generator(budget_from_organization=True)
    gen.runway.limits = {"gen4_turbo": 2}
    for gid in ("g1", "g2", "g3"):
        await gen.deliver(request_event(gid))
    await gen.pass_()
    assert len(gen.runway.creates) == 2


async def test_bad_output_is_resubmitted_until_attempts_run_out(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(max_attempts=2)
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    await gen.deliver(rejected("g1", "task-1", 1, cost=3))
    await gen.pass_()
    submitted = await gen.events("task-submitted")
    assert [(e["runwayTaskId"], e["attempt"]) for e in submitted] == [("task-1", 1), ("task-2", 2)]
    await gen.deliver(rejected("g1", "task-2", 2, cost=4))
    await gen.pass_()
    assert len(gen.runway.creates) == 2
    [failed] = await gen.events("failed")
    assert failed["errorCode"] == "runway_bad_output"
    assert failed["runwayFailureCode"] == "INTERNAL.BAD_OUTPUT.CODE01"
    assert failed["runwayTaskId"] == "task-2"
    assert failed["costCredits"] == 7  # every attempt's cost, summed
    assert [(r["attempt"], r["cost_credits"]) for r in await gen.rows()] == [(1, 3), (2, 4)]


async def test_no_resubmission_after_a_cancel(make_generator: Make, request_event: Any) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    await gen.pass_()
    await gen.deliver(cancel("g1"))
    await gen.deliver(rejected("g1", "task-1", 1))
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    [event] = await gen.events("cancelled")
    assert event["runwayTaskId"] == "task-1"


async def test_missing_image_fails_and_large_images_are_uploaded(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(data_uri_max_bytes=1024)
    gen.storage.objects["images/u1/big.png"] = b"\x89PNG" + b"\x01" * 4096
    await gen.deliver(request_event("g1", image_key="images/u1/missing.png"))
    await gen.deliver(request_event("g2", image_key="images/u1/big.png"))
    await gen.pass_()
    [failed] = await gen.events("failed")
    assert (failed["generationId"], failed["errorCode"]) == ("g1", "image_missing")
    [create] = gen.runway.creates
    assert create.prompt_image == "runway://upload-1"
    assert gen.runway.uploads == [("big.png", 4100, "image/png")]


async def test_a_pass_sweeps_at_most_every_sweep_interval(
    make_generator: Make, request_event: Any
) -> None:
    # a pass woken by a task's end claims the freed slot at once: the sweep's round trips
    # (expired claims, abandoned intents, late cancels) wait for their interval
    gen = make_generator(claim_lease_s=10, sweep_interval_s=30)
    await gen.pass_()  # the first pass sweeps
    await gen.deliver(request_event("g1"))
    assert len(await gen.submitter.claim()) == 1  # a replica claims, then dies preparing
    gen.clock.advance(11)  # the claim's lease has run out...
    await gen.pass_()
    assert gen.runway.creates == []  # ...but the last sweep was less than 30 s ago
    gen.clock.advance(19)
    await gen.pass_()
    assert len(gen.runway.creates) == 1


async def test_an_expired_claim_goes_back_to_pending(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(claim_lease_s=10)
    await gen.deliver(request_event("g1"))
    claimed = await gen.submitter.claim()  # a replica claims, then dies while preparing
    assert len(claimed) == 1
    gen.clock.advance(11)
    await gen.pass_()
    assert len(gen.runway.creates) == 1
    [row] = await gen.rows()
    assert row["state"] == "submitted"
    assert row["retry_at"] <= gen.clock.now - timedelta(seconds=10)
