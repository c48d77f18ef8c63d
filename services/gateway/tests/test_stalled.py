"""Generations older than the whole pipeline's bound and still not finished are shown:
the ``vidgen_generations_stalled`` gauge counts them and one log line names each."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from vidgen_common.events import Envelope, EventData
from vidgen_common.runtime import ServiceRuntime
from vidgen_gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration


def gauge(runtime: ServiceRuntime) -> float:
    found = re.search(
        r"^vidgen_generations_stalled (\S+)$", runtime.metrics.render().decode(), re.M
    )
    assert found, "no vidgen_generations_stalled gauge"
    return float(found.group(1))


async def age(runtime: ServiceRuntime, gid: str, seconds: int) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE generations SET created_at = now() - make_interval(secs => :s), "
                "updated_at = now() - make_interval(secs => :s) WHERE id = :g"
            ),
            {"s": seconds, "g": gid},
        )


async def test_generations_older_than_the_pipelines_bound_are_counted_and_logged_once(
    gateway: Any,
    runtime: ServiceRuntime,
    settings: GatewaySettings,
    generate: Callable[..., Awaitable[str]],
    feed: Callable[[EventData], Awaitable[Envelope[EventData]]],
    downstream: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck = await generate("alice")
    finished = await generate("alice")
    young = await generate("alice")
    await feed(downstream(stuck, "alice").submitted())
    await feed(downstream(finished, "alice").completed())
    bound = settings.pipeline_bound_s
    for gid in (stuck, finished):
        await age(runtime, gid, int(bound) + 60)

    watch = gateway.watch  # the bootstrap's, on the runtime's metrics (bound: the setting)
    with caplog.at_level(logging.WARNING, logger="vidgen_gateway.stalled"):
        assert await watch.check() == 1
        assert await watch.check() == 1
    assert gauge(runtime) == 1.0
    lines = [r.getMessage() for r in caplog.records if stuck in r.getMessage()]
    assert len(lines) == 1, lines
    assert "generating" in lines[0]
    assert not any(finished in r.getMessage() or young in r.getMessage() for r in caplog.records)

    await feed(downstream(stuck, "alice").failed())
    assert await watch.check() == 0
    assert gauge(runtime) == 0.0
