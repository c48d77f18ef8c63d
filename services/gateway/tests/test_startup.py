"""``python -m vidgen_gateway`` started before its database and broker: it waits, then runs.

The process answers ``/healthz`` at once and ``/readyz`` 503 saying what it waits for, instead
of exiting with a traceback (which, under Kubernetes' growing restart back-off, turns a short
outage into minutes); a stop signal during the wait ends it cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from vidgen_testing import PrivatePostgres, PrivateTansu, free_port, wait_until

pytestmark = pytest.mark.integration


async def start_gateway(
    settings: Any, database_url: str, kafka: str
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {
        **os.environ,
        "VIDGEN_ENV": "test",
        "VIDGEN_SERVICE_NAME": settings.db_schema,
        "VIDGEN_HTTP_PORT": str(port),
        "VIDGEN_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "VIDGEN_STARTUP_BACKOFF_MAX_S": "1",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_REQUEST_TIMEOUT_MS": "5000",
        "DATABASE_URL": database_url,
        "S3_ENDPOINT": settings.s3.endpoint,
        "S3_BUCKET": settings.s3.bucket,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vidgen_gateway", env=env, stderr=subprocess.PIPE
    )
    return proc, f"http://127.0.0.1:{port}"


def answers(proc: asyncio.subprocess.Process, url: str, code: int, says: str = "") -> Any:
    async def condition() -> dict[str, Any] | None:
        assert proc.returncode is None, "the gateway exited"
        try:
            async with httpx.AsyncClient(timeout=10) as c:
                r = await c.get(url)
        except httpx.TransportError:
            return None
        if r.status_code != code or says not in r.text:
            return None
        body: dict[str, Any] = r.json()
        return body

    return condition


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    _, stderr = await proc.communicate()
    return stderr


async def test_a_gateway_started_before_its_database_and_broker_waits_and_then_serves(
    settings: Any,
    make_postgres: Callable[..., PrivatePostgres],
    make_tansu: Callable[..., PrivateTansu],
) -> None:
    pg = make_postgres(start=False)
    broker = make_tansu(start=False)
    proc, url = await start_gateway(settings, pg.url, broker.bootstrap)
    try:
        await wait_until(answers(proc, url + "/healthz", 200), within=60, what="/healthz")
        body = await wait_until(
            answers(proc, url + "/readyz", 503, "waiting for the database"), within=30
        )
        assert body["checks"]["database"].startswith("error")

        pg.start()
        await wait_until(answers(proc, url + "/readyz", 503, "waiting for the broker"), within=60)
        broker.start()
        await wait_until(answers(proc, url + "/readyz", 200), within=60, what="ready")
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            assert (await c.get("/api/videos")).status_code == 401  # the API is served
    finally:
        stderr = await stop(proc)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert b"Traceback" not in stderr


async def test_a_stop_signal_while_waiting_for_the_database_ends_the_process_cleanly(
    settings: Any, make_postgres: Callable[..., PrivatePostgres]
) -> None:
    pg = make_postgres(start=False)
    proc, url = await start_gateway(settings, pg.url, f"127.0.0.1:{free_port()}")
    try:
        await wait_until(answers(proc, url + "/readyz", 503, "waiting for the database"), within=60)
    finally:
        stderr = await stop(proc)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert b"Traceback" not in stderr
