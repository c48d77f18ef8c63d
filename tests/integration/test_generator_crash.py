"""The generator as a real process, stopped (SIGTERM) or killed (-9) in the middle of a create.

The generator reaches PostgreSQL through a TCP proxy the test can cut (an outage: existing
connections are reset and new ones refused, as while PostgreSQL restarts), and Runway is the
simulator with a create that is slow or whose answer is never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from vidgen_common.events import GenerationFailed, TaskSubmitted
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

Stack = Any  # conftest's Stack (test modules cannot import conftest)
ROOT = Path(__file__).resolve().parents[2]
# How long the database stays away while a created task's id is being recorded: longer than
# any fixed retry budget of the recording would last (the old code gave up after ~13 s).
OUTAGE_S = 20.0


class TcpProxy:
    """A TCP proxy to PostgreSQL that can be cut (connections reset, new ones refused)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}

    async def cut(self) -> None:
        """PostgreSQL goes away: every connection is reset, new ones are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._links):
            w.transport.abort()

    async def close(self) -> None:
        await self.cut()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GeneratorProcess:
    """``python -m vidgen_generator`` (worker role) against the test's stack."""

    def __init__(self, stack: Stack, database_url: str, log: Path, **settings: str) -> None:
        self.port = _free_port()
        self.log = log
        kafka, s3 = stack.kafka, stack.s3
        env = {
            **os.environ,
            "VIDGEN_ENV": "development",
            "VIDGEN_ROLE": "worker",
            "VIDGEN_HTTP_PORT": str(self.port),
            "VIDGEN_DATABASE_SCHEMA": stack.generator_schema,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "KAFKA_SESSION_TIMEOUT_MS": "3000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "KAFKA_PARTITIONS": str(kafka.partitions),
            "S3_ENDPOINT": s3.endpoint,
            "S3_BUCKET": s3.bucket,
            "RUNWAYML_API_SECRET": stack.sim.api_key,
            "RUNWAYML_BASE_URL": stack.sim.base_url,
            "RUNWAY_TIMEOUT_S": "5",
            "VIDGEN_SUBMIT_POLL_INTERVAL_S": "0.2",
            "VIDGEN_INSTANCE_HEARTBEAT_S": "0.5",
            "VIDGEN_INSTANCE_DEAD_AFTER_S": "3",
            "VIDGEN_RECORD_RETRY_CAP_S": "1",
            "VIDGEN_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "vidgen_generator"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"generator exited {self.popen.returncode}\n{self.tail()}")
            try:
                async with httpx.AsyncClient() as client:
                    r = await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, within=60, what="the generator process to be ready (/readyz)")

    async def exited(self, within: float) -> int:
        await wait_until(
            lambda: self.popen.poll() is not None, within=within, what="the generator to exit"
        )
        return int(self.popen.returncode)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop_for_good(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


async def _rows(stack: Stack, gid: str) -> list[dict[str, Any]]:
    engine = create_async_engine(stack.db.database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    f'SELECT state, runway_task_id, error_code FROM "{stack.generator_schema}"'  # noqa: S608
                    ".submissions WHERE generation_id = :g"
                ),
                {"g": gid},
            )
            return [dict(r._mapping) for r in result]
    except Exception:  # the schema is created by the process's migrations: not yet
        return []
    finally:
        await engine.dispose()


async def _state(stack: Stack, gid: str) -> str | None:
    rows = await _rows(stack, gid)
    return rows[0]["state"] if rows else None


@pytest.fixture
async def proxy(stack: Stack) -> Any:
    url = make_url(stack.db.database_url)
    p = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await p.start()
    yield p
    await p.close()


def _through(stack: Stack, proxy: TcpProxy) -> str:
    url = make_url(stack.db.database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


async def test_a_sigterm_mid_create_waits_until_the_task_id_is_recorded(
    stack: Stack, proxy: TcpProxy, make_request: Any, tmp_path: Path
) -> None:
    await stack.sim.set_scenario(
        {"latency": {"next_n": 1, "seconds": 3.0, "endpoints": ["create"]}}
    )
    generator = GeneratorProcess(stack, _through(stack, proxy), tmp_path / "generator.log")
    try:
        await generator.ready()
        gid = unique("g-")
        await stack.publish(make_request(gid))

        async def intent() -> bool:
            return await _state(stack, gid) == "intent"

        await wait_until(intent, within=60, what="the create to be on its way")
        generator.popen.send_signal(signal.SIGTERM)  # a rollout, while the create is in flight
        await proxy.cut()  # and PostgreSQL goes away before the task id can be recorded

        async def created() -> bool:
            return bool((await stack.counters())["creates_accepted"] == 1)

        await wait_until(created, within=30, what="Runway to create the task")
        await asyncio.sleep(OUTAGE_S)  # the outage lasts (the fault's length, not a wait)
        await proxy.start()  # PostgreSQL is back
        assert await generator.exited(within=90) == 0, generator.tail()
        [row] = await _rows(stack, gid)
        assert row["state"] == "submitted", generator.tail()
        assert row["runway_task_id"]
        assert await stack.outbox(stack.generator_schema, TaskSubmitted) == [gid]
        assert (await stack.counters())["creates_accepted"] == 1
    finally:
        generator.stop_for_good()


async def test_a_kill_9_mid_create_orphans_that_create_only_and_it_is_counted(
    stack: Stack, make_request: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Runway creates (and charges) the task, then its answer never arrives: the process is
    # killed meanwhile. Runway lists no tasks: this one is lost for good, and must be counted.
    await stack.sim.set_scenario({"lost_create": {"next_n": 1, "mode": "hang", "hang_s": 60}})
    generator = GeneratorProcess(stack, stack.db.database_url, tmp_path / "generator.log")
    try:
        await generator.ready()
        gid = unique("g-")
        await stack.publish(make_request(gid))

        async def created_and_waiting() -> bool:
            counters = await stack.counters()
            return counters["creates_accepted"] == 1 and await _state(stack, gid) == "intent"

        await wait_until(created_and_waiting, within=60, what="a create in flight")
        generator.popen.kill()
        assert await generator.exited(within=30) == -signal.SIGKILL
    finally:
        generator.stop_for_good()
    survivor = await stack.generator(
        instance_heartbeat_s=0.5, instance_dead_after_s=3.0, intent_stale_s=600.0
    )

    async def failed() -> bool:
        return await _state(stack, gid) == "failed"

    await wait_until(failed, within=60, what="the orphaned create to be given up")
    [row] = await _rows(stack, gid)
    assert row["error_code"] == "submission_unknown"
    assert await stack.outbox(stack.generator_schema, GenerationFailed) == [gid]
    assert survivor.app.metrics.orphaned_creates._value.get() == 1
    assert any(
        gid in r.getMessage() and "orphaned" in r.getMessage() and r.levelname == "ERROR"
        for r in caplog.records
    )
    counters = await stack.counters()
    assert counters["creates_accepted"] == 1  # never created a second time
