"""Fakes and fixtures of the generator's tests (test modules cannot import each other)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql, session_factory
from vidgen_common.events import Envelope, EventData, GenerationRequested
from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_common.storage import ObjectInfo, StoredObject
from vidgen_common.uow import UnitOfWork
from vidgen_common.workloop import Pace
from vidgen_generator.budget import Budget
from vidgen_generator.creator import TaskCreator
from vidgen_generator.handlers import GeneratorHandlers
from vidgen_generator.holds import Holds
from vidgen_generator.image import PromptImages
from vidgen_generator.liveness import Liveness
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.migrations import MIGRATIONS
from vidgen_generator.recorder import TaskRecorder
from vidgen_generator.runway import CreateRequest, Organization, RunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_generator.submitter import Submitter
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.verdicts import Classified, Verdict

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Outcome = str | Classified


class FakeRunway:
    """A RunwayClient whose creates answer from a script (task ids or verdicts)."""

    def __init__(self) -> None:
        self.script: list[Outcome] = []
        self.creates: list[CreateRequest] = []
        self.uploads: list[tuple[str, int, str]] = []
        self.limits: dict[str, int | None] = {}
        self.cancels: list[str] = []
        self.cancel_script: list[Classified] = []
        self.credit_balance: int | None = None  # None: not told (no credit hold)
        self._n = 0

    async def upload(self, filename: str, data: bytes, content_type: str) -> str:
        self.uploads.append((filename, len(data), content_type))
        return f"runway://upload-{len(self.uploads)}"

    async def create(self, request: CreateRequest) -> str:
        self.creates.append(request)
        outcome = self.script.pop(0) if self.script else None
        if isinstance(outcome, Classified):
            raise RunwayCallError(outcome)
        if outcome is not None:
            return outcome
        self._n += 1
        return f"task-{self._n}"

    async def cancel(self, task_id: str) -> None:
        self.cancels.append(task_id)
        if self.cancel_script:
            raise RunwayCallError(self.cancel_script.pop(0))

    async def organization(self) -> Organization:
        return Organization(concurrency=dict(self.limits), credit_balance=self.credit_balance)


def _verdict(
    kind: Verdict, code: str, message: str = "", retry_after: float | None = None
) -> Classified:
    return Classified(kind, code, message or code, retry_after)


@dataclass
class FakeStorage:
    objects: dict[str, bytes] = field(default_factory=dict)

    async def ensure_bucket(self) -> None:
        return None

    async def put_bytes(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        self.objects[key] = data
        return StoredObject(key, len(data), "")

    async def put_stream(self, *args: Any, **kwargs: Any) -> StoredObject:
        raise NotImplementedError

    async def stat(self, key: str) -> ObjectInfo | None:
        data = self.objects.get(key)
        return None if data is None else ObjectInfo(key, len(data), "image/png", {})

    async def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    async def remove(self, key: str) -> None:
        self.objects.pop(key, None)

    def presigned_get(self, key: str, ttl_s: int | None = None) -> str:
        return f"https://store.example/{key}?signed"


def _request_event(gid: str, **overrides: Any) -> GenerationRequested:
    fields: dict[str, Any] = {
        "generation_id": gid,
        "project_id": "p1",
        "user_id": "u1",
        "image_key": "images/u1/a.png",
        "image_content_type": "image/png",
        "prompt": "a slow pan over a misty lake",
        "model": "gen4_turbo",
        "ratio": "1280:720",
        "duration": 5,
        "requested_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return GenerationRequested(**fields)


@dataclass
class GeneratorUnderTest:
    """The generator's handlers and submission loop on a real schema, with fakes for I/O."""

    settings: GeneratorSettings
    sessions: async_sessionmaker[AsyncSession]
    runway: Any  # FakeRunway, or the SDK adapter against the simulator
    storage: FakeStorage
    clock: FakeClock
    metrics: GeneratorMetrics
    handlers: GeneratorHandlers
    submitter: Submitter
    liveness: Liveness

    async def deliver(self, data: EventData, envelope_id: str | None = None) -> Envelope[Any]:
        env: Envelope[Any] = Envelope(data=data, source="/test")
        if envelope_id is not None:
            env = Envelope(data=data, source="/test", id=envelope_id)
        await self.handlers.table()[type(data)](env)  # the consumer's own table
        return env

    async def pass_(self) -> int:
        """One submission pass, waiting for the submissions it started."""
        claimed = await self.submitter.run_once()
        await self.submitter.idle()
        return claimed

    async def events(self, type_suffix: str | None = None) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            rows = (await run_sql(s, "SELECT event_type, value FROM outbox ORDER BY id")).all()
        out = [{"type": r[0], **json.loads(bytes(r[1]))} for r in rows]
        if type_suffix:
            out = [e for e in out if e["type"] == f"vidgen.generation.{type_suffix}.v1"]
        return out

    async def rows(self) -> list[dict[str, Any]]:
        async with self.sessions() as s:
            result = await run_sql(s, "SELECT * FROM submissions ORDER BY generation_id, attempt")
            return [dict(r._mapping) for r in result.all()]


def build_generator(
    sessions: async_sessionmaker[AsyncSession],
    settings: GeneratorSettings,
    runway: RunwayClient,
    storage: FakeStorage,
    clock: FakeClock,
) -> GeneratorUnderTest:
    def uow() -> UnitOfWork:
        return UnitOfWork(sessions, source="/vidgen/generator")

    metrics = GeneratorMetrics()
    images = PromptImages(storage, runway, data_uri_max_bytes=settings.data_uri_max_bytes)
    pace = Pace()
    liveness = Liveness(uow, settings.instance_heartbeat_s)
    budget = Budget(settings, runway, clock=lambda: clock.now.timestamp())
    holds = Holds(settings, metrics)

    def out_of_credits(price: int | None) -> None:
        holds.refused_for_credits(price)
        budget.refresh_soon()

    recorder = TaskRecorder(uow, runway, settings, metrics, clock=clock, concurrency=budget.limit)
    creator = TaskCreator(
        uow,
        runway,
        images,
        settings,
        metrics,
        clock=clock,
        recorder=recorder,
        instance_id=liveness.instance_id,
        stopping=lambda: pace.stopping,
        on_rate_limited=pace.pause_until,
        on_out_of_credits=out_of_credits,
    )
    submitter = Submitter(
        uow, creator, budget, settings, metrics, liveness, clock=clock, pace=pace, holds=holds,
    )  # fmt: skip
    handlers = GeneratorHandlers(uow, settings, wake=submitter.wake.set, clock=clock)
    return GeneratorUnderTest(
        settings, sessions, runway, storage, clock, metrics, handlers, submitter, liveness
    )


@pytest.fixture
async def gen_sessions(engine: AsyncEngine, db_schema: str) -> async_sessionmaker[AsyncSession]:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    return session_factory(engine)


MakeGenerator = Callable[..., GeneratorUnderTest]


@pytest.fixture
def make_generator(gen_sessions: async_sessionmaker[AsyncSession]) -> MakeGenerator:
    """Builds a generator (a "replica"); replicas made by one test share schema and fakes."""
    shared_runway = FakeRunway()
    shared_storage = FakeStorage({"images/u1/a.png": PNG})
    shared_clock = FakeClock()

    def make(**settings: Any) -> GeneratorUnderTest:
        s = GeneratorSettings(**{"retry_base_s": 1.0, "sweep_interval_s": 0.0, **settings})
        return build_generator(gen_sessions, s, shared_runway, shared_storage, shared_clock)

    return make


@pytest.fixture
def request_event() -> Callable[..., GenerationRequested]:
    """Makes a GenerationRequested for a generation id (fields overridable)."""
    return _request_event


@pytest.fixture
def verdict() -> Callable[..., Classified]:
    """Makes a Runway verdict for FakeRunway's script."""
    return _verdict


@pytest.fixture
def fake_runway() -> FakeRunway:
    return FakeRunway()


@pytest.fixture
def fake_storage() -> FakeStorage:
    return FakeStorage()


BuildOn = Callable[..., GeneratorUnderTest]


@pytest.fixture
def make_generator_on(gen_sessions: async_sessionmaker[AsyncSession]) -> BuildOn:
    """Builds a generator on a given Runway client and store (e.g. the SDK adapter against the
    simulator); replicas made by one test share the clock."""
    clock = FakeClock()

    def make(runway: RunwayClient, storage: FakeStorage, **settings: Any) -> GeneratorUnderTest:
        s = GeneratorSettings(**{"retry_base_s": 1.0, "sweep_interval_s": 0.0, **settings})
        return build_generator(gen_sessions, s, runway, storage, clock)

    return make
