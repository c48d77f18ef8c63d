"""The durable work loop over a real PostgreSQL table: claims with ``FOR UPDATE SKIP
LOCKED`` and a lease, as the generator's submitter and the poller's tracker do."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_common.db import run_sql, session_factory
from vidgen_common.migrations import Migration, migrate
from vidgen_common.workloop import Pace, WorkLoop, WorkSpec
from vidgen_testing import wait_until

pytestmark = pytest.mark.integration

JOBS = Migration(
    "test",
    1,
    "jobs",
    (
        """CREATE TABLE jobs (
            id text PRIMARY KEY,
            generation_id text NOT NULL,
            due_at timestamptz NOT NULL,
            done_at timestamptz,
            claim_token text,
            handled int NOT NULL DEFAULT 0,
            traceparent text,
            tracestate text
        )""",
    ),
)
LEASE_S = 30.0
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True)
class Job:
    id: str
    generation_id: str
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass
class Jobs:
    """A table of jobs and the service side of the loop: claim, handle, next due."""

    sessions: async_sessionmaker[AsyncSession]
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    most_running: int = 0
    handled_by: dict[str, list[str]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.gate.set()

    async def add(self, job_id: str, in_s: float = 0.0, traceparent: str | None = None) -> None:
        async with self.sessions() as s, s.begin():
            await run_sql(
                s,
                "INSERT INTO jobs (id, generation_id, due_at, traceparent) "
                "VALUES (:id, :g, :due, :tp)",
                {
                    "id": job_id,
                    "g": f"gen-{job_id}",
                    "due": utc_now() + timedelta(seconds=in_s),
                    "tp": traceparent,
                },
            )

    async def claim(self, free: int) -> list[tuple[Job, str]]:
        token = uuid.uuid4().hex
        async with self.sessions() as s, s.begin():
            result = await run_sql(
                s,
                """WITH due AS (
                       SELECT id FROM jobs WHERE done_at IS NULL AND due_at <= :now
                       ORDER BY due_at LIMIT :n FOR UPDATE SKIP LOCKED
                   )
                   UPDATE jobs SET claim_token = :t, due_at = :until
                   WHERE id IN (SELECT id FROM due)
                   RETURNING id, generation_id, traceparent, tracestate""",
                {
                    "now": utc_now(),
                    "n": free,
                    "t": token,
                    "until": utc_now() + timedelta(seconds=LEASE_S),
                },
            )
            return [(Job(**r), token) for r in result.mappings().all()]

    async def handle(self, job: Job, token: str) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            if job.id in self.fail:
                raise RuntimeError(f"job {job.id} broke")
            async with self.sessions() as s, s.begin():
                await run_sql(
                    s,
                    "UPDATE jobs SET done_at = :now, handled = handled + 1 "
                    "WHERE id = :id AND claim_token = :t",
                    {"now": utc_now(), "id": job.id, "t": token},
                )
        finally:
            self.running -= 1

    async def next_due_at(self) -> datetime | None:
        async with self.sessions() as s:
            result = await run_sql(s, "SELECT min(due_at) FROM jobs WHERE done_at IS NULL")
            due: datetime | None = result.scalar_one()
            return due

    async def done(self) -> dict[str, int]:
        async with self.sessions() as s:
            result = await run_sql(s, "SELECT id, handled FROM jobs WHERE done_at IS NOT NULL")
            return {r["id"]: r["handled"] for r in result.mappings().all()}

    def spec(self, **hooks: Any) -> WorkSpec[Job]:
        return WorkSpec(
            name="jobs",
            claim=self.claim,
            handle=self.handle,
            next_due_at=self.next_due_at,
            key=lambda job: job.id,
            describe=lambda job: f"job {job.id}",
            span_name="work on a job",
            span_attributes=lambda job: {"vidgen.generation_id": job.generation_id},
            **hooks,
        )


MakeLoop = Callable[..., WorkLoop[Job]]
HOOKS = ("before_claim", "after_claim", "after_pass")


@pytest.fixture
async def jobs(engine: AsyncEngine, db_schema: str) -> Jobs:
    await migrate(engine, db_schema, [JOBS])
    return Jobs(session_factory(engine))


@pytest.fixture
async def make_loop(jobs: Jobs) -> AsyncIterator[MakeLoop]:
    """Loops over ``jobs`` (a long idle sleep: only a due row, a wake or a pause ends it)."""
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []

    def make(start: bool = True, **kwargs: Any) -> WorkLoop[Job]:
        hooks = {
            k: kwargs.pop(k) for k in ("before_claim", "after_claim", "after_pass") if k in kwargs
        }
        options: dict[str, Any] = {"concurrency": 4, "idle_s": 30.0, "min_sleep_s": 0.01}
        loop = WorkLoop(jobs.spec(**hooks), **{**options, **kwargs})
        if start:
            stops.append(asyncio.Event())
            tasks.append(asyncio.create_task(loop.run(stops[-1])))
        return loop

    yield make
    jobs.gate.set()
    for stop in stops:
        stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


async def test_every_due_row_is_handled_once_within_the_concurrency(
    jobs: Jobs, make_loop: MakeLoop
) -> None:
    jobs.gate.clear()
    for i in range(7):
        await jobs.add(f"j{i}")
    loop = make_loop(concurrency=3)
    await wait_until(lambda: jobs.running == 3, within=10, what="three jobs in flight")
    assert loop.free == 0
    assert len(loop.in_flight) == 3
    jobs.gate.set()
    done = await wait_until(lambda: _all_done(jobs, 7), within=10, what="every job done")
    assert done == {f"j{i}": 1 for i in range(7)}
    assert jobs.most_running == 3


async def test_replicas_never_work_on_one_row_at_once(jobs: Jobs, make_loop: MakeLoop) -> None:
    for i in range(20):
        await jobs.add(f"j{i}")
    make_loop(concurrency=2)
    make_loop(concurrency=2)
    make_loop(concurrency=2)
    done = await wait_until(lambda: _all_done(jobs, 20), within=15, what="every job done")
    assert set(done.values()) == {1}


async def test_the_loop_sleeps_until_the_next_row_is_due(jobs: Jobs, make_loop: MakeLoop) -> None:
    await jobs.add("later", in_s=0.5)
    added = utc_now()
    make_loop()  # its first pass claims nothing and sleeps until the row is due, not 30 s
    done = await wait_until(lambda: _all_done(jobs, 1), within=10, what="the later job done")
    assert done == {"later": 1}
    assert (utc_now() - added).total_seconds() >= 0.45


async def test_wake_starts_a_pass_at_once(jobs: Jobs, make_loop: MakeLoop) -> None:
    asleep = asyncio.Event()

    async def passed() -> None:
        asleep.set()

    loop = make_loop(after_pass=passed)
    await asyncio.wait_for(asleep.wait(), 5)  # nothing due: asleep for its 30 s idle time
    await jobs.add("now")
    loop.wake.set()
    await wait_until(lambda: _all_done(jobs, 1), within=5, what="the job done without waiting")


async def test_nothing_is_claimed_while_paused(jobs: Jobs, make_loop: MakeLoop) -> None:
    loop = make_loop(start=False)
    loop.pause_until(utc_now() + timedelta(seconds=0.6))
    loop.pause_until(utc_now())  # an earlier pause does not shorten it
    await jobs.add("j1")
    assert await loop.claim() == []
    paused_at = utc_now()
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await wait_until(lambda: _all_done(jobs, 1), within=10, what="the job done after the pause")
        assert (utc_now() - paused_at).total_seconds() >= 0.5
    finally:
        stop.set()
        await task


async def test_a_pace_shared_with_a_handler_pauses_and_stops_the_loop(
    jobs: Jobs, make_loop: MakeLoop
) -> None:
    """What a handler holds (a create answered 429) pauses the loop without holding it."""
    pace = Pace()
    loop = make_loop(start=False, pace=pace)
    await jobs.add("j1")
    pace.pause_until(utc_now() + timedelta(seconds=30))
    assert loop.paused(utc_now())
    assert await loop.claim() == []
    pace.pause_until(utc_now())  # an earlier pause does not shorten it
    assert loop.paused(utc_now())
    loop.stop_claiming()
    assert pace.stopping
    assert loop.stopping


async def test_a_failing_handler_is_logged_and_the_loop_goes_on(
    jobs: Jobs, make_loop: MakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    jobs.fail.add("bad")
    await jobs.add("bad")
    await jobs.add("good")
    with caplog.at_level(logging.ERROR, logger="vidgen_common.workloop"):
        make_loop()
        await wait_until(lambda: _all_done(jobs, 1), within=10, what="the good job done")
        await wait_until(
            lambda: any("job bad failed" in r.getMessage() for r in caplog.records), within=5
        )
    assert await jobs.done() == {"good": 1}  # the bad one waits for its lease


async def test_a_failing_pass_is_logged_and_the_next_pass_runs(
    jobs: Jobs, make_loop: MakeLoop, caplog: pytest.LogCaptureFixture
) -> None:
    passes = 0

    async def flaky_sweep() -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RuntimeError("the database blinked")

    await jobs.add("j1")
    with caplog.at_level(logging.ERROR, logger="vidgen_common.workloop"):
        loop = make_loop(start=False, before_claim=flaky_sweep, idle_s=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        try:
            await wait_until(lambda: _all_done(jobs, 1), within=10, what="the job done")
        finally:
            stop.set()
            await task
    assert any("jobs pass failed" in r.getMessage() for r in caplog.records)
    assert passes >= 2


async def test_hooks_run_around_the_claim_and_after_the_pass(jobs: Jobs) -> None:
    calls: list[str] = []

    def hook(name: str) -> Callable[[], Any]:
        async def record() -> None:
            calls.append(name)

        return record

    loop = WorkLoop(
        jobs.spec(before_claim=hook("before"), after_claim=hook("after"), after_pass=hook("pass")),
        concurrency=1,
        idle_s=30.0,
        min_sleep_s=0.01,
    )
    await jobs.add("j1")
    assert await loop.run_once() == 1
    await loop.idle()
    assert calls == ["before", "after"]  # run_once is a pass without its housekeeping
    assert await jobs.done() == {"j1": 1}


async def test_shutdown_waits_for_the_work_in_flight_however_long(jobs: Jobs) -> None:
    running_after_drain: list[int] = []

    async def after_drain() -> None:
        running_after_drain.append(jobs.running)

    jobs.gate.clear()
    await jobs.add("j1")
    await jobs.add("j2")
    loop = WorkLoop(
        jobs.spec(after_drain=after_drain), concurrency=1, idle_s=30.0, min_sleep_s=0.01
    )
    stop = asyncio.Event()
    run = asyncio.create_task(loop.run(stop))
    await wait_until(lambda: jobs.running == 1, within=10, what="j1 in flight")
    stop.set()
    await wait_until(lambda: loop.stopping, within=5)
    run.cancel()  # an outer cancel does not cut the drain short
    await asyncio.gather(run, return_exceptions=True)
    drain = asyncio.create_task(loop.drain())
    await asyncio.sleep(0.1)
    assert not drain.done()
    assert await loop.claim() == []  # stopping: j2 stays for another replica
    jobs.gate.set()
    await asyncio.wait_for(drain, 10)
    await loop.drain()  # idempotent: the hook ran once, after the work in flight ended
    assert running_after_drain == [0]
    assert await jobs.done() == {"j1": 1}
    assert loop.in_flight == frozenset()


async def test_a_bounded_drain_gives_up_waiting_after_its_timeout(jobs: Jobs) -> None:
    jobs.gate.clear()
    await jobs.add("j1")
    loop = WorkLoop(jobs.spec(), concurrency=1, idle_s=30.0, min_sleep_s=0.01, drain_timeout_s=0.2)
    stop = asyncio.Event()
    run = asyncio.create_task(loop.run(stop))
    await wait_until(lambda: jobs.running == 1, within=10, what="j1 in flight")
    stop.set()
    await asyncio.wait_for(run, 5)  # returned although j1 is still in flight
    assert jobs.running == 1
    jobs.gate.set()
    await loop.idle()
    assert await jobs.done() == {"j1": 1}


async def test_work_runs_in_the_trace_of_its_row(jobs: Jobs) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    loop = WorkLoop(
        jobs.spec(),
        concurrency=2,
        idle_s=30.0,
        min_sleep_s=0.01,
        tracer=provider.get_tracer("test"),
    )
    await jobs.add("j1", traceparent=TRACEPARENT)
    assert await loop.run_once() == 1
    await loop.idle()
    [span] = exporter.get_finished_spans()
    assert span.name == "work on a job"
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert span.attributes is not None
    assert span.attributes["vidgen.generation_id"] == "gen-j1"


async def _all_done(jobs: Jobs, n: int) -> dict[str, int] | None:
    done = await jobs.done()
    return done if len(done) == n else None
