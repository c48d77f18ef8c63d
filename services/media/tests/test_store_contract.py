"""One contract per port, run against the real adapter and the fake the unit tests use.

The handler tests run on :class:`FakeUnitOfWork` and :class:`FakeStorage` (``conftest``); they
prove something about the service only while the fakes behave like
:class:`~vidgen_media.store.SqlMediaUnitOfWork` on PostgreSQL and
:class:`~vidgen_common.storage.MinioStorage` on S3. Each test here runs on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from vidgen_common.db import create_engine, run_sql, session_factory
from vidgen_common.errors import StorageError
from vidgen_common.events import Envelope, VideoUrlExpired
from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_common.settings import DatabaseSettings, S3Settings
from vidgen_common.storage import MinioStorage, Storage
from vidgen_common.uow import UnitOfWork
from vidgen_media.handlers import CONSUMER
from vidgen_media.migrations import MIGRATIONS
from vidgen_media.models import Transfer
from vidgen_media.store import MediaUnitOfWork, SqlMediaUnitOfWork
from vidgen_testing import unique

pytestmark = pytest.mark.integration


@dataclass
class UowUnderTest:
    uow: Callable[[], MediaUnitOfWork]
    emitted: Callable[[], Awaitable[list[str]]]
    """The generation ids of the events committed so far, in order."""


@pytest.fixture(params=["fake", "sql"])
async def adapter(request: pytest.FixtureRequest, world: Any) -> AsyncIterator[UowUnderTest]:
    if request.param == "fake":

        async def fake_emitted() -> list[str]:
            return [e.generation_id for e in world.emitted]

        yield UowUnderTest(world.uow, fake_emitted)
        return
    db: DatabaseSettings = request.getfixturevalue("db_settings")
    schema = unique("media_contract_")
    engine = create_engine(db, schema)
    try:
        await migrate(engine, schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
        sessions = session_factory(engine)

        def make() -> MediaUnitOfWork:
            return SqlMediaUnitOfWork(lambda: UnitOfWork(sessions, source="/test"), CONSUMER)

        async def sql_emitted() -> list[str]:
            async with sessions() as session:
                rows = await run_sql(session, "SELECT key FROM outbox ORDER BY id")
                return [bytes(k).decode() for (k,) in rows.all()]

        yield UowUnderTest(make, sql_emitted)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


def _row(gid: str, **fields: Any) -> Transfer:
    values: dict[str, Any] = {
        "generation_id": gid,
        "user_id": "u1",
        "runway_task_id": f"task-{gid}",
        "state": "downloading",
        "video_key": f"videos/u1/{gid}.mp4",
        "event_id": f"e-{gid}",
        **fields,
    }
    return Transfer(**values)


async def _now(adapter: UowUnderTest) -> datetime:
    async with adapter.uow() as uow:
        return await uow.transfers.now()


def _expired(gid: str) -> VideoUrlExpired:
    return VideoUrlExpired(
        generation_id=gid, user_id="u1", runway_task_id=f"task-{gid}", reported_at=datetime.now(UTC)
    )


async def test_a_committed_row_is_read_back(adapter: UowUnderTest) -> None:
    async with adapter.uow() as uow:
        assert await uow.transfers.get("g1") is None
        uow.transfers.save(_row("g1", attempts=2))
        await uow.commit()
    async with adapter.uow() as uow:
        row = await uow.transfers.get("g1")
        assert row is not None
        assert (row.state, row.attempts, row.video_key) == ("downloading", 2, "videos/u1/g1.mp4")
        row.state = "stored"
        uow.transfers.save(row)
        await uow.commit()
    async with adapter.uow() as uow:
        again = await uow.transfers.get("g1")
        assert again is not None
        assert again.state == "stored"


async def test_nothing_is_kept_without_a_commit(adapter: UowUnderTest) -> None:
    envelope = Envelope(data=_expired("g2"), source="/test")
    async with adapter.uow() as uow:
        uow.transfers.save(_row("g2"))
        assert await uow.claim(envelope)
        uow.emit(_expired("g2"))
    async with adapter.uow() as uow:
        assert await uow.transfers.get("g2") is None
        assert not await uow.handled(envelope)
    assert await adapter.emitted() == []


async def test_a_claim_is_recorded_once_with_its_events(adapter: UowUnderTest) -> None:
    envelope = Envelope(data=_expired("g3"), source="/test")
    async with adapter.uow() as uow:
        assert not await uow.handled(envelope)
        assert await uow.claim(envelope)
        uow.emit(_expired("g3"))
        await uow.commit()
    async with adapter.uow() as uow:
        assert await uow.handled(envelope)
        assert not await uow.claim(envelope)
    assert await adapter.emitted() == ["g3"]


async def test_stalled_rows_are_unfinished_unleased_and_oldest_first(
    adapter: UowUnderTest,
) -> None:
    now = await _now(adapter)
    hour = timedelta(hours=1)
    rows = [
        _row("old", updated_at=now - 3 * hour),
        _row("older", updated_at=now - 4 * hour, state="retrying"),
        _row("fresh", updated_at=now + hour),
        _row("done", updated_at=now - 5 * hour, state="completed"),
        _row("leased", updated_at=now - 5 * hour, lease_token="t", lease_expires_at=now + hour),
        _row("lapsed", updated_at=now - 2 * hour, lease_token="t", lease_expires_at=now - hour),
    ]
    async with adapter.uow() as uow:
        for row in rows:
            uow.transfers.save(row)
        await uow.commit()
    async with adapter.uow() as uow:
        found = await uow.transfers.stalled(now, 10)
        assert [r.generation_id for r in found] == ["older", "old", "lapsed"]
        assert [r.generation_id for r in await uow.transfers.stalled(now, 2)] == ["older", "old"]
        keys = {r.video_key for r in rows}
        assert await uow.transfers.leased_keys(keys) == {"videos/u1/leased.mp4"}
        assert await uow.transfers.leased_keys(set()) == set()


# --------------------------------------------------------------------------- storage


@pytest.fixture(params=["fake", "minio"])
async def store(request: pytest.FixtureRequest, world: Any) -> AsyncIterator[Storage]:
    if request.param == "fake":
        yield world.storage
        return
    s3: S3Settings = request.getfixturevalue("s3_settings")
    real = MinioStorage(s3, bucket=unique("contract-"))
    await real.ensure_bucket()
    yield real


async def test_an_object_put_is_read_back_and_removed(store: Storage, tmp_path: Path) -> None:
    put = await store.put_bytes("a/b.bin", b"hello", "application/octet-stream")
    assert (put.key, put.size) == ("a/b.bin", 5)
    info = await store.stat("a/b.bin")
    assert info is not None
    assert (info.size, info.content_type, info.etag) == (5, "application/octet-stream", put.etag)
    assert await store.get_bytes("a/b.bin") == b"hello"
    copy = await store.download_to("a/b.bin", tmp_path / "copy")
    assert (copy.size, copy.sha256, copy.etag) == (5, put.sha256, put.etag)
    assert (tmp_path / "copy").read_bytes() == b"hello"
    await store.remove("a/b.bin")
    assert await store.stat("a/b.bin") is None
    await store.remove("a/b.bin")  # removing what is not there is no error


async def test_a_stream_put_is_one_object(store: Storage) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    put = await store.put_stream("s/c.mp4", chunks(), "video/mp4")
    assert put.size == len(b"one two three")
    assert await store.get_bytes("s/c.mp4") == b"one two three"
    info = await store.stat("s/c.mp4")
    assert info is not None
    assert info.etag == put.etag


async def test_a_missing_object_is_a_storage_error(store: Storage, tmp_path: Path) -> None:
    assert await store.stat("missing/x") is None
    with pytest.raises(StorageError):
        await store.get_bytes("missing/x")
    with pytest.raises(StorageError):
        await store.download_to("missing/x", tmp_path / "x")


async def test_no_upload_is_left_unfinished_after_a_put(store: Storage) -> None:
    await store.put_bytes("u/done.bin", b"x", "application/octet-stream")
    assert [u for u in await store.incomplete_uploads("u/") if u.key == "u/done.bin"] == []
