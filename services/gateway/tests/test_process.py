"""``python -m vidgen_gateway``: the whole process starts, serves, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import httpx
import pytest

from vidgen_testing import wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_process_serves_the_api_and_stops_cleanly(
    settings: Any, auth: Any, image: Any, storage: Any
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "VIDGEN_ENV": "test",
        "VIDGEN_SERVICE_NAME": settings.db_schema,
        "VIDGEN_HTTP_PORT": str(port),
        "VIDGEN_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "DATABASE_URL": settings.db.database_url,
        "S3_ENDPOINT": settings.s3.endpoint,
        "S3_BUCKET": settings.s3.bucket,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vidgen_gateway", env=env, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            assert proc.returncode is None, "the gateway exited"
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(url + "/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, within=60, what="the gateway ready")
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            assert (await c.get("/api/videos")).status_code == 401
            assert (await c.get("/openapi.json")).json()["info"]["title"] == "vidgen gateway"
            up = await c.post(
                "/api/images/upload",
                files={"file": ("a.png", image(), "image/png")},
                headers=auth("alice"),
            )
            r = await c.post(
                "/api/videos/generate",
                json={"projectId": up.json()["projectId"], "prompt": "until SIGTERM"},
                headers=auth("alice"),
            )
            gid = r.json()["generationId"]
            metrics = (await c.get("/metrics")).text
            assert "vidgen_http_requests_total" in metrics
            # an open live stream does not hold the shutdown: it ends, the process exits
            async with c.stream("GET", f"/api/videos/{gid}/events", headers=auth("alice")) as sse:
                lines = sse.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                proc.send_signal(signal.SIGTERM)
                rest = [line async for line in lines]
            assert any(line.startswith("id: ") for line in rest)
        stopped = await asyncio.wait_for(proc.wait(), 20)
        assert stopped == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
