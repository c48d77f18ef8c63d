"""The claim order on real PostgreSQL: fair shares between users, priority within a user."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.integration

Make = Any  # conftest's MakeGenerator (test modules cannot import conftest)


async def _request(gen: Any, request_event: Any, gid: str, user: str, **fields: Any) -> None:
    """A request one second after the previous one (so created_at orders them)."""
    gen.clock.advance(1)
    await gen.deliver(request_event(gid, user_id=user, **fields))


async def _submitted_users(gen: Any) -> Counter[str]:
    return Counter(r["user_id"] for r in await gen.rows() if r["state"] == "submitted")


async def test_a_newcomer_gets_the_next_slot_before_a_flooders_backlog(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 3}, max_concurrent_submissions=2)
    for i in range(22):
        await _request(gen, request_event, f"flood-{i:02}", "flooder")
    assert await gen.pass_() == 2  # two of the flooder's tasks run
    await _request(gen, request_event, "single-1", "single")
    assert await gen.pass_() == 1  # one slot left in the budget
    submitted = [e["generationId"] for e in await gen.events("task-submitted")]
    assert sorted(submitted[:2]) == ["flood-00", "flood-01"]
    assert submitted[2] == "single-1"


async def test_within_a_user_high_goes_first_and_low_last(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(max_concurrent_submissions=1)
    await _request(gen, request_event, "low-1", "u1", priority="low")
    await _request(gen, request_event, "normal-1", "u1")
    await _request(gen, request_event, "normal-2", "u1", priority="normal")
    await _request(gen, request_event, "high-1", "u1", priority="high")
    for _ in range(4):
        assert await gen.pass_() == 1
    order = [e["generationId"] for e in await gen.events("task-submitted")]
    assert order == ["high-1", "normal-1", "normal-2", "low-1"]


async def test_slots_are_shared_by_weight(make_generator: Make, request_event: Any) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 6}, user_weights={"user-a": 2})
    for i in range(10):  # B's rows are the older ones: age does not decide between users
        await _request(gen, request_event, f"b-{i}", "user-b")
    for i in range(10):
        await _request(gen, request_event, f"a-{i}", "user-a")
    assert await gen.pass_() == 6
    assert await _submitted_users(gen) == {"user-a": 4, "user-b": 2}


async def test_one_pass_splits_its_free_slots_between_waiting_users(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 4})
    for i in range(10):
        await _request(gen, request_event, f"old-{i}", "early")
    for i in range(10):
        await _request(gen, request_event, f"new-{i}", "late")
    assert await gen.pass_() == 4
    assert await _submitted_users(gen) == {"early": 2, "late": 2}
    submitted = {e["generationId"] for e in await gen.events("task-submitted")}
    assert submitted == {"old-0", "old-1", "new-0", "new-1"}  # each user's oldest


async def test_shares_are_per_model(make_generator: Make, request_event: Any) -> None:
    """Tasks a user runs on one model do not count against its share of another model."""
    gen = make_generator(model_budgets={"gen4_turbo": 2, "gen4.5": 1})
    await _request(gen, request_event, "busy-1", "busy")
    await _request(gen, request_event, "busy-2", "busy")
    assert await gen.pass_() == 2  # busy fills gen4_turbo
    await _request(gen, request_event, "busy-3", "busy", model="gen4.5")
    await _request(gen, request_event, "other-1", "other", model="gen4.5")
    assert await gen.pass_() == 1
    order = [e["generationId"] for e in await gen.events("task-submitted")]
    assert order[2] == "busy-3"  # both score 1 on gen4.5 (busy runs nothing there): the older


async def test_priority_is_kept_from_the_request_to_the_resubmission(
    make_generator: Make, request_event: Any
) -> None:
    from vidgen_common.events import TaskOutputRejected

    gen = make_generator(max_attempts=2)
    await gen.deliver(request_event("g-high", priority="high"))
    await gen.deliver(request_event("g-default"))
    await gen.deliver(request_event("g-low", priority="low"))
    rows = {r["generation_id"]: r["priority"] for r in await gen.rows()}
    assert rows == {"g-high": 2, "g-default": 1, "g-low": 0}
    await gen.pass_()
    [task] = [e for e in await gen.events("task-submitted") if e["generationId"] == "g-high"]
    await gen.deliver(
        TaskOutputRejected(
            generation_id="g-high",
            user_id="u1",
            runway_task_id=task["runwayTaskId"],
            attempt=1,
            failure="The output did not meet our quality standards.",
            failure_code="INTERNAL.BAD_OUTPUT.CODE01",
            cost_credits=0,
            rejected_at=gen.clock.now,
        )
    )
    attempts = [
        (r["attempt"], r["priority"]) for r in await gen.rows() if r["generation_id"] == "g-high"
    ]
    assert attempts == [(1, 2), (2, 2)]


async def test_task_submitted_carries_the_models_concurrency(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator(model_budgets={"gen4_turbo": 3})
    await gen.deliver(request_event("g1"))
    await gen.deliver(request_event("g2", model="gen4.5"))  # no budget: no limit known
    await gen.pass_()
    events = {e["generationId"]: e for e in await gen.events("task-submitted")}
    assert events["g1"]["modelConcurrency"] == 3
    assert events["g2"].get("modelConcurrency") is None


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf")])
def test_user_weights_must_be_positive(weight: float) -> None:
    from pydantic import ValidationError

    from vidgen_generator.settings import GeneratorSettings

    with pytest.raises(ValidationError):
        GeneratorSettings(user_weights={"user-a": weight})


async def test_ties_go_by_the_requests_time_not_by_when_the_events_arrived(
    make_generator: Make, request_event: Any
) -> None:
    """Equal scores are ordered by the time of the request, as the gateway's queue view
    orders them: events from several partitions arrive in another order."""
    gen = make_generator(model_budgets={"gen4_turbo": 1}, max_concurrent_submissions=1)
    asked = gen.clock.now
    for gid, user, late_s in (("b-1", "user-b", 2), ("a-1", "user-a", 1), ("c-1", "user-c", 3)):
        gen.clock.advance(1)  # a-1 was asked for before b-1 but arrives after it
        await gen.deliver(
            request_event(gid, user_id=user, requested_at=asked + timedelta(seconds=late_s))
        )
    assert await gen.pass_() == 1
    assert [e["generationId"] for e in await gen.events("task-submitted")] == ["a-1"]
