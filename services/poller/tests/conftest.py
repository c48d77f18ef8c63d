"""Fakes and fixtures of the poller's tests (test modules cannot import each other)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql, session_factory
from vidgen_common.events import Envelope, EventData, TaskSubmitted
from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_common.uow import UnitOfWork
from vidgen_poller.dead_letters import PollerDeadLetters
from vidgen_poller.durations import DurationBook
from vidgen_poller.handlers import PollerHandlers
from vidgen_poller.metrics import PollerMetrics
from vidgen_poller.migrations import MIGRATIONS
from vidgen_poller.runway import TaskView
from vidgen_poller.settings import PollerSettings
from vidgen_poller.tracker import Tracker
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.verdicts import Classified, Verdict


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeTasks:
    """A RunwayTasks whose tasks are whatever the test sets (a view, or an error)."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskView | Classified] = {}
        self.retrieves: Counter[str] = Counter()
        self.deletes: list[str] = []
        self.delete_error: Classified | None = None

    def set(self, task_id: str, status: str, **fields: Any) -> None:
        self.tasks[task_id] = TaskView(task_id, status, **fields)  # type: ignore[arg-type]

    async def retrieve(self, task_id: str) -> TaskView:
        self.retrieves[task_id] += 1
        task = self.tasks.get(task_id)
        if task is None:
            raise RunwayCallError(Classified(Verdict.PERMANENT, "runway_not_found", "Not found."))
        if isinstance(task, Classified):
            raise RunwayCallError(task)
        return task

    async def delete(self, task_id: str) -> None:
        if self.delete_error is not None:
            raise RunwayCallError(self.delete_error)
        self.deletes.append(task_id)
        view = self.tasks.get(task_id)
        if isinstance(view, TaskView) and not view.finished:
            # as Runway: a task cancelled while running is charged, one not yet running is not
            charged = view.estimated_cost_credits if view.status == "RUNNING" else 0
            self.tasks[task_id] = TaskView(task_id, "CANCELLED", cost_credits=charged or 0)
        elif isinstance(view, TaskView):
            del self.tasks[task_id]  # as Runway: a finished task is deleted, then unknown


@dataclass
class PollerUnderTest:
    settings: PollerSettings
    sessions: async_sessionmaker[AsyncSession]
    runway: FakeTasks
    clock: FakeClock
    metrics: PollerMetrics
    book: DurationBook
    handlers: PollerHandlers
    tracker: Tracker
    dead_letters: PollerDeadLetters

    async def deliver(self, data: EventData) -> Envelope[Any]:
        env: Envelope[Any] = Envelope(data=data, source="/test")
        await self.handlers.table()[type(data)](env)  # the consumer's own table
        return env

    async def submit(self, task_id: str, gid: str | None = None, **fields: Any) -> None:
        event = TaskSubmitted(
            generation_id=gid or f"g-{task_id}",
            user_id="u1",
            runway_task_id=task_id,
            model=fields.pop("model", "gen4_turbo"),
            duration=fields.pop("duration", 5),
            submitted_at=fields.pop("submitted_at", self.clock.now),
            **fields,
        )
        await self.deliver(event)

    async def pass_(self) -> int:
        claimed = await self.tracker.run_once()
        await self.tracker.idle()
        return claimed

    async def events(self, type_suffix: str | None = None) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            rows = (await run_sql(s, "SELECT event_type, value FROM outbox ORDER BY id")).all()
        out = [{"type": r[0], **json.loads(bytes(r[1]))} for r in rows]
        if type_suffix:
            out = [e for e in out if e["type"] == f"vidgen.generation.{type_suffix}.v1"]
        return out

    async def row(self, task_id: str) -> dict[str, Any]:
        async with self.sessions() as s:
            result = await run_sql(
                s, "SELECT * FROM tracked_tasks WHERE runway_task_id = :t", {"t": task_id}
            )
            return dict(result.one()._mapping)

    async def due_in(self, task_id: str) -> float:
        return float((((await self.row(task_id))["next_poll_at"]) - self.clock.now).total_seconds())


@pytest.fixture
async def poller_sessions(engine: AsyncEngine, db_schema: str) -> async_sessionmaker[AsyncSession]:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    return session_factory(engine)


MakePoller = Callable[..., PollerUnderTest]


@pytest.fixture
def make_poller(poller_sessions: async_sessionmaker[AsyncSession]) -> MakePoller:
    """Builds a poller (a "replica"); replicas made by one test share schema, fake and clock."""
    runway = FakeTasks()
    clock = FakeClock()

    def make(**settings: Any) -> PollerUnderTest:
        s = PollerSettings(**settings)

        def uow() -> UnitOfWork:
            return UnitOfWork(poller_sessions, source="/vidgen/poller")

        metrics = PollerMetrics()
        book = DurationBook(poller_sessions, s, clock=lambda: clock.now.timestamp())
        tracker = Tracker(uow, runway, book, s, metrics, clock=clock)
        handlers = PollerHandlers(uow, book, s, wake=tracker.wake.set, clock=clock)
        dead = PollerDeadLetters(uow, s, wake=tracker.wake.set, clock=clock)
        return PollerUnderTest(
            s, poller_sessions, runway, clock, metrics, book, handlers, tracker, dead
        )

    return make
