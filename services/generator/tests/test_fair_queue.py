"""The claim order on real PostgreSQL: fair shares between users, priority within a user."""

from __future__ import annotations

from collections import Counter
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
