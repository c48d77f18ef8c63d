"""The end-to-end watch: generations that stopped moving are visible to operators.

Every stage bounds its own part (the generator its creates, the poller its Runway tasks, media
its transfers); this watch is the last line: a generation requested longer ago than the whole
pipeline's bound (``VIDGEN_PIPELINE_BOUND_S``) and still not terminal is counted by the gauge
``vidgen_generations_stalled`` and named, once per process, in a warning carrying its
generation id. Every gateway replica computes the same figure from the shared table.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.aio import sleep_unless
from vidgen_common.db import run_sql
from vidgen_common.logs import generation_id_var
from vidgen_common.metrics import Metrics

log = logging.getLogger(__name__)

_STALLED = text(
    "SELECT id, status, extract(epoch FROM now() - created_at)::float8 AS age, "
    "extract(epoch FROM now() - updated_at)::float8 AS quiet, count(*) OVER () AS total "
    "FROM generations WHERE status IN ('queued', 'generating', 'processing') "
    "AND created_at < now() - make_interval(secs => :bound) "
    "ORDER BY created_at LIMIT :limit"
)


class StalledWatch:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        *,
        bound_s: float,
        interval_s: float,
        limit: int = 200,
    ) -> None:
        self._sessions = sessions
        self._bound_s = bound_s
        self._interval_s = interval_s
        self._limit = limit
        self._logged: set[str] = set()
        self.gauge = Gauge(
            "vidgen_generations_stalled",
            "Generations requested longer ago than VIDGEN_PIPELINE_BOUND_S and still not "
            "finished. Above 0: look up the generation ids in the gateway's log, then that "
            "generation in each stage's log and /readyz (a stalled consumer, a relay that "
            "cannot publish, a dead letter)",
            registry=metrics.registry,
        )

    async def check(self) -> int:
        """Count the stalled generations (and log the new ones); returns the count."""
        async with self._sessions() as session:
            rows = (
                await run_sql(session, _STALLED, {"bound": self._bound_s, "limit": self._limit})
            ).all()
        total = int(rows[0].total) if rows else 0
        self.gauge.set(total)
        seen = {r.id for r in rows}
        for r in rows:
            if r.id in self._logged:
                continue
            token = generation_id_var.set(r.id)
            try:
                log.warning(
                    "generation %s is still %s %.0f s after it was requested (not moved for "
                    "%.0f s), longer than the pipeline's bound of %.0f s",
                    r.id,
                    r.status,
                    r.age,
                    r.quiet,
                    self._bound_s,
                )
            finally:
                generation_id_var.reset(token)
        self._logged = seen  # forget those that moved on, so the set stays small
        return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # the database is away: the next check will tell
                log.debug("stalled-generation check failed: %r", exc)
            if await sleep_unless(stop, self._interval_s):
                return
