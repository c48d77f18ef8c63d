"""Pytest fixtures for tests against real PostgreSQL, Kafka and S3 (a pytest plugin).

Each service is found, in order: from the environment (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``S3_ENDPOINT``; ``make test`` exports the local stack's
addresses); else a testcontainers container when a Docker engine answers; else the test
fails under ``CI=true`` and is skipped otherwise. Per-test fixtures give every test its own
topic prefix, database schema and bucket, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vidgen_common.db import create_engine
from vidgen_common.outbox import Record
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
from vidgen_common.storage import MinioStorage


def unique(prefix: str) -> str:
    """A short unique name for topics, schemas, buckets and ids."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _docker_available() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False  # no engine: do not let docker-py try (and leak its socket)
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        client.ping()
    except Exception:
        return False
    finally:
        client.close()
    return True


def _unavailable(what: str, var: str) -> None:
    message = f"{what} unavailable: set {var} (make test does) or run a Docker engine"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " [CI=true: a missing service fails the run]")
    pytest.skip(message)


def _from_env_or_container(
    var: str, what: str, start: Callable[[], tuple[str, Any]]
) -> Iterator[str]:
    if os.environ.get(var):
        yield os.environ[var]
        return
    if not _docker_available():
        _unavailable(what, var)
    address, container = start()
    try:
        yield address
    finally:
        container.stop()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    def start() -> tuple[str, Any]:
        from testcontainers.postgres import PostgresContainer

        c = PostgresContainer("postgres:16-alpine", driver="asyncpg").start()
        return c.get_connection_url(), c

    yield from _from_env_or_container("DATABASE_URL", "PostgreSQL", start)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    def start() -> tuple[str, Any]:
        from testcontainers.kafka import KafkaContainer

        c = KafkaContainer().with_kraft().start()
        return c.get_bootstrap_server(), c

    yield from _from_env_or_container("KAFKA_BOOTSTRAP_SERVERS", "Kafka", start)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    def start() -> tuple[str, Any]:
        from testcontainers.minio import MinioContainer

        c = MinioContainer().start()
        cfg = c.get_config()
        os.environ.setdefault("S3_ACCESS_KEY", cfg["access_key"])
        os.environ.setdefault("S3_SECRET_KEY", cfg["secret_key"])
        return f"http://{cfg['endpoint']}", c

    yield from _from_env_or_container("S3_ENDPOINT", "S3", start)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Kafka settings with a unique topic prefix and short group timeouts."""
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=unique("t") + ".",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
        handler_retries=2,
        retry_backoff_ms=20,
        partitions=3,
    )


@pytest.fixture
def db_settings(database_url: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=database_url, database_pool_size=5)


@pytest.fixture
async def db_schema(db_settings: DatabaseSettings) -> AsyncIterator[str]:
    """A fresh schema for this test, dropped afterwards."""
    schema = unique("test_")
    yield schema
    admin: AsyncEngine = create_async_engine(db_settings.database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture
async def engine(db_settings: DatabaseSettings, db_schema: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_settings, db_schema)
    yield eng
    await eng.dispose()


@pytest.fixture
def s3_settings(s3_endpoint: str) -> S3Settings:
    return S3Settings(endpoint=s3_endpoint, bucket=unique("test-"))


@pytest.fixture
async def storage(s3_settings: S3Settings) -> MinioStorage:
    st = MinioStorage(s3_settings)
    await st.ensure_bucket()
    return st


async def wait_until(
    condition: Callable[[], Any], within: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` (sync or async) until it returns a truthy value, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        await asyncio.sleep(interval)


class MemorySink:
    """A RecordSink keeping records in memory; can fail after publishing, like a crash."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.fail_after_publish = 0

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)
        if self.fail_after_publish:
            self.fail_after_publish -= 1
            raise ConnectionError("crash between publish and mark")
