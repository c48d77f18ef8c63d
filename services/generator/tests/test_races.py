"""Two replicas handling one generation's events at the same moment, on real PostgreSQL.

Each test holds one handler's transaction open at its critical point (just before its commit),
runs the other handler meanwhile, then lets the first commit: the interleaving that READ
COMMITTED gets wrong without a per-generation lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_common.events import Envelope, EventData, GenerationCancelRequested, TaskOutputRejected
from vidgen_common.uow import UnitOfWork
from vidgen_generator.handlers import GeneratorHandlers
from vidgen_testing import wait_until

pytestmark = pytest.mark.integration

Make = Any


class _HeldUnitOfWork(UnitOfWork):
    """A unit of work whose commit waits until the test lets it go."""

    def __init__(self, sessions: Any, reached: asyncio.Event, release: asyncio.Event) -> None:
        super().__init__(sessions, source="/vidgen/generator")
        self._reached = reached
        self._release = release

    async def commit(self) -> None:
        self._reached.set()
        await self._release.wait()
        await super().commit()


def _held(
    sessions: async_sessionmaker[AsyncSession], reached: asyncio.Event, release: asyncio.Event
) -> Callable[[], UnitOfWork]:
    return lambda: _HeldUnitOfWork(sessions, reached, release)


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(
        generation_id=gid, user_id="u1", requested_at=datetime.now(UTC)
    )


async def _waiting_for_a_lock(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        result = await run_sql(s, "SELECT count(*) FROM pg_locks WHERE NOT granted")
        return int(result.scalar_one())


async def _race(gen: Any, first: Callable[[GeneratorHandlers], Any], second: EventData) -> None:
    """``first`` (on handlers whose commit is held) against ``second`` delivered meanwhile."""
    reached, release = asyncio.Event(), asyncio.Event()
    slow = GeneratorHandlers(
        _held(gen.sessions, reached, release), gen.settings, wake=lambda: None, clock=gen.clock
    )
    holder = asyncio.create_task(first(slow))
    await asyncio.wait_for(reached.wait(), 30)
    other = asyncio.create_task(gen.deliver(second))

    async def other_done_or_waiting() -> bool:
        return other.done() or await _waiting_for_a_lock(gen.sessions) > 0

    await wait_until(other_done_or_waiting, within=30, what="the cancel to finish or to wait")
    release.set()
    await asyncio.gather(holder, other)


async def test_a_cancel_handled_while_the_request_commits_is_not_lost(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    request = Envelope(data=request_event("g1"), source="/test")
    await _race(gen, lambda h: h.on_requested(request), cancel("g1"))
    await gen.pass_()
    assert gen.runway.creates == []
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]
    assert [r["state"] for r in await gen.rows()] == ["cancelled"]


async def test_a_cancel_handled_while_a_resubmission_commits_is_not_lost(
    make_generator: Make, request_event: Any
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    await gen.pass_()  # attempt 1 is task-1 at Runway
    rejected = Envelope(
        data=TaskOutputRejected(
            generation_id="g1",
            user_id="u1",
            runway_task_id="task-1",
            attempt=1,
            failure="The output did not meet our quality standards.",
            failure_code="INTERNAL.BAD_OUTPUT.CODE01",
            cost_credits=0,
            rejected_at=datetime.now(UTC),
        ),
        source="/test",
    )
    await _race(gen, lambda h: h.on_output_rejected(rejected), cancel("g1"))
    await gen.pass_()
    assert len(gen.runway.creates) == 1  # no attempt 2 for a cancelled generation
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]


async def test_a_cancel_recorded_beside_a_pending_row_stops_it_before_runway(
    make_generator: Make, request_event: Any
) -> None:
    # Whatever left a cancel beside a live row (a race, a replayed event), the claimed → intent
    # step re-checks it: the row is cancelled and never reaches Runway.
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    async with gen.sessions() as s:
        await run_sql(
            s,
            "INSERT INTO generator_cancels (generation_id, requested_at) VALUES ('g1', now())",
        )
        await s.commit()
    await gen.pass_()
    assert gen.runway.creates == []
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]
    assert [r["state"] for r in await gen.rows()] == ["cancelled"]


async def test_a_cancel_handled_while_a_claim_commits_stops_the_create(
    make_generator: Make, request_event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = make_generator()
    await gen.deliver(request_event("g1"))
    reached, release = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(gen.submitter, "_uow", _held(gen.sessions, reached, release))
    claim = asyncio.create_task(gen.submitter.claim())
    await asyncio.wait_for(reached.wait(), 30)
    other = asyncio.create_task(gen.deliver(cancel("g1")))

    async def other_done_or_waiting() -> bool:
        return other.done() or await _waiting_for_a_lock(gen.sessions) > 0

    await wait_until(other_done_or_waiting, within=30, what="the cancel to finish or to wait")
    release.set()
    [(row, token)] = await claim
    await other
    await gen.submitter._creator.submit(row, token)  # the claimed row, as the loop would
    assert gen.runway.creates == []
    assert [e["generationId"] for e in await gen.events("cancelled")] == ["g1"]
