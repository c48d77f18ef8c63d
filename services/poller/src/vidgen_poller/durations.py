"""Learned task durations: recent finished tasks per (model, video length), all replicas.

:meth:`DurationBook.stats` answers from memory; every ``learn_refresh_s`` it re-reads the
latest durations recorded by any replica (``tracked_tasks.duration_s``), and durations this
replica learns are added at once. It falls back from (model, length) to the model, then to
the model's prior (``duration_priors_s``: by default the catalog's ``typical_task_s``, see
:mod:`vidgen_runway.catalog`), when too few tasks have finished.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TypeVar, cast

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_poller.schedule import DurationStats, learn
from vidgen_poller.settings import PollerSettings

Key = tuple[str, int]
K = TypeVar("K")


class DurationBook:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: PollerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._s = settings
        self._clock = clock
        self._by_key: dict[Key, deque[float]] = {}
        self._by_model: dict[str, deque[float]] = {}
        self._loaded_at: float | None = None

    def prior(self, model: str) -> float:
        return self._s.duration_priors_s.get(model, self._s.default_duration_prior_s)

    async def stats(self, model: str, duration: int) -> DurationStats:
        if self._loaded_at is None or self._clock() - self._loaded_at > self._s.learn_refresh_s:
            await self.reload()
        cfg = self._s.schedule
        samples = self._by_key.get((model, duration), ())
        if len(samples) < cfg.min_samples:
            samples = self._by_model.get(model, ())
        return learn(list(samples), self.prior(model), cfg)

    def record(self, model: str, duration: int, seconds: float) -> None:
        self._window(self._by_key, (model, duration)).append(seconds)
        self._window(self._by_model, model).append(seconds)

    async def reload(self) -> None:
        self._loaded_at = self._clock()
        async with self._sessions() as session:
            result = await run_sql(
                session,
                "SELECT model, duration, duration_s FROM tracked_tasks "
                "WHERE duration_s IS NOT NULL ORDER BY finished_at DESC LIMIT :n",
                {"n": self._s.learn_window * 20},
            )
            rows = cast(list[tuple[str, int, float]], result.all())
        by_key: defaultdict[Key, list[float]] = defaultdict(list)
        by_model: defaultdict[str, list[float]] = defaultdict(list)
        for model, duration, seconds in rows:
            by_key[(str(model), int(duration))].append(float(seconds))
            by_model[str(model)].append(float(seconds))
        n = self._s.learn_window
        self._by_key = {k: deque(reversed(v[:n]), maxlen=n) for k, v in by_key.items()}
        self._by_model = {k: deque(reversed(v[:n]), maxlen=n) for k, v in by_model.items()}

    def _window(self, table: dict[K, deque[float]], key: K) -> deque[float]:
        if key not in table:
            table[key] = deque(maxlen=self._s.learn_window)
        return table[key]
