"""Pytest fixtures for tests against real PostgreSQL, Kafka and S3 (a pytest plugin).

Loaded by the repository's root conftest (``pytest_plugins = ["vidgen_testing.plugin"]``).

Each service is found, in order: from the environment (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``S3_ENDPOINT``; ``make test`` exports the local stack's
addresses); else a testcontainers container when a Docker engine answers; else the test
fails under ``CI=true`` and is skipped otherwise. Per-test fixtures give every test its own
topic prefix, database schema and bucket, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vidgen_common.db import create_engine
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
from vidgen_common.storage import MinioStorage
from vidgen_testing import topics
from vidgen_testing.helpers import unique
from vidgen_testing.servers import PrivatePostgres, PrivateTansu, find_pg_bindir, find_tansu


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

    for bootstrap in _from_env_or_container("KAFKA_BOOTSTRAP_SERVERS", "Kafka", start):
        try:
            yield bootstrap
        finally:  # the session's own topics (a broker slows with every topic it keeps)
            _delete_own_topics(bootstrap)


def _delete_own_topics(bootstrap: str) -> None:
    try:
        asyncio.run(topics.delete_mine(bootstrap))
    except Exception as exc:  # cleaning up never fails the run it follows
        print(f"the session's topics were not deleted: {exc!r}", file=sys.stderr)


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
        topic_prefix=topics.prefix(),
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


@pytest.fixture
def make_tansu(tmp_path: Any) -> Iterator[Callable[..., PrivateTansu]]:
    """``make_tansu(start=True, storage="memory://tansu/")``: a broker of this test's own on a
    free port (stopped afterwards), for tests that restart or stop the broker."""
    binary = find_tansu()
    if binary is None:
        _unavailable("the tansu binary", "TANSU_BIN")
    made: list[PrivateTansu] = []

    def make(*, start: bool = True, **kw: Any) -> PrivateTansu:
        assert binary is not None
        broker = PrivateTansu(binary, log_path=tmp_path / f"tansu-{len(made)}.log", **kw)
        made.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def make_postgres() -> Iterator[Callable[..., PrivatePostgres]]:
    """``make_postgres(start=True)``: a throw-away PostgreSQL cluster of this test's own on a
    free port (destroyed afterwards), for tests that restart, stop or pause the database."""
    bindir = find_pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL's server binaries", "PG_BINDIR")
    made: list[PrivatePostgres] = []

    def make(*, start: bool = True, **kw: Any) -> PrivatePostgres:
        assert bindir is not None
        pg = PrivatePostgres(bindir, **kw)
        made.append(pg)
        if start:
            pg.start()
        return pg

    yield make
    for pg in made:
        pg.destroy()
