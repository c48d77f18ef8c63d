"""Helpers shared by the common library's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import KafkaPublisher
from vidgen_common.db import session_factory
from vidgen_common.events import GenerationCancelRequested
from vidgen_common.migrations import COMMON_MIGRATIONS, Migration, migrate
from vidgen_common.settings import KafkaSettings

EFFECTS = Migration(
    "test",
    1,
    "effects table",
    ("CREATE TABLE effects (id bigserial PRIMARY KEY, generation_id text, note text)",),
)


def _cancel_event(gid: str, note: str = "") -> GenerationCancelRequested:
    return GenerationCancelRequested(
        generation_id=gid, user_id=note or "u", requested_at=datetime.now(UTC)
    )


@pytest.fixture
def cancel_event() -> Callable[..., GenerationCancelRequested]:
    """Makes a small event whose user_id carries a note, to tell events of one key apart."""
    return _cancel_event


@pytest.fixture
async def sessions(engine: AsyncEngine, db_schema: str) -> async_sessionmaker[AsyncSession]:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, EFFECTS])
    return session_factory(engine)


@pytest.fixture
async def publisher(kafka_settings: KafkaSettings) -> AsyncIterator[KafkaPublisher]:
    pub = KafkaPublisher(kafka_settings, client_id="test")
    await pub.start()
    yield pub
    await pub.stop()
