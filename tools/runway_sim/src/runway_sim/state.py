"""`SimState`: everything one simulator instance holds, hung on `app.state.sim`.

Created by `create_app` (never at import). All of it lives on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

import httpx
from starlette.requests import Request

from runway_sim.counters import Counters
from runway_sim.render import Renderer
from runway_sim.scenario import Scenario
from runway_sim.settings import Settings
from runway_sim.tasks import Status, Task, TaskEngine
from runway_sim.upload_store import UploadStore

DAY_S = 24 * 3600.0


class SimState:
    def __init__(
        self, settings: Settings, scenario: Scenario, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.initial_scenario = scenario.model_copy(deep=True)
        self.clock = clock
        self.renderer = Renderer(
            settings.render_workers, settings.render_executor, settings.render_cache_size
        )
        self.http: httpx.AsyncClient | None = None
        self.wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._install(scenario.model_copy(deep=True))

    def _install(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.engine = TaskEngine(self.limit_for, self._on_terminal, self.wake.set)
        self.ledger: dict[str, Task] = {}  # every task created, deleted ones too (GET /_sim/tasks)
        self.counters = Counters()
        self.uploads = UploadStore(self.settings.upload_ttl_s)
        self.outputs: dict[str, Future[bytes]] = {}
        self.credit_balance = scenario.org.credit_balance
        self._daily: dict[str, deque[float]] = {}
        self._seed_rngs()

    def _seed_rngs(self) -> None:
        seed = self.scenario.seed if self.scenario.seed is not None else secrets.randbits(64)
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed ^ 0x5EED)

    # -- scenario and reset ------------------------------------------------------------------

    def set_scenario(self, scenario: Scenario) -> None:
        old = self.scenario
        self.scenario = scenario
        if scenario.seed != old.seed:
            self._seed_rngs()
        if scenario.org.credit_balance != old.org.credit_balance:
            self.credit_balance = scenario.org.credit_balance
        self.engine.reconcile(self.clock())

    def reset(self, keep_scenario: bool = False) -> None:
        """Forget tasks, uploads, counters and usage; restore the balance (and the scenario)."""
        self.cancel_background()
        scenario = self.scenario if keep_scenario else self.initial_scenario
        self._install(scenario.model_copy(deep=True))

    def tag_fault(self, task_id: str, kind: str) -> None:
        """Note on a task that an injected fault touched it (listed by `GET /_sim/tasks`)."""
        task = self.ledger.get(task_id)
        if task is not None:
            task.faults.append(kind)

    # -- limits, usage and billing -----------------------------------------------------------

    def limit_for(self, model: str) -> int | None:
        return self.scenario.limits(model).max_concurrent

    def daily_generations(self, model: str, now: float) -> int:
        window = self._daily.setdefault(model, deque())
        while window and window[0] <= now - DAY_S:
            window.popleft()
        return len(window)

    def record_generation(self, model: str, now: float) -> None:
        self._daily.setdefault(model, deque()).append(now)

    def charge(self, credits: int) -> None:
        self.credit_balance -= credits
        self.counters.credits_charged += credits

    def _on_terminal(self, task: Task) -> None:
        refund = task.credits - (task.cost or 0)
        if refund:
            self.credit_balance += refund
            self.counters.credits_charged -= refund
            self.counters.credits_refunded += refund
        self.counters.final_statuses[task.status.value] += 1
        if task.failure is not None:
            self.counters.failure_codes[task.failure.code] += 1
        if task.status is not Status.SUCCEEDED:
            self.outputs.pop(task.id, None)

    def live_statuses(self) -> dict[str, int]:
        self.engine.advance(self.clock())
        tally: dict[str, int] = {}
        for task in self.engine.tasks.values():
            tally[task.status.value] = tally.get(task.status.value, 0) + 1
        return tally

    # -- background work ---------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.get_running_loop().create_task(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def cancel_background(self) -> None:
        for job in list(self._background):
            job.cancel()
        self._background.clear()

    async def tick_forever(self) -> None:
        """Keep task state (and counters) current even when nobody polls."""
        while True:
            now = self.clock()
            self.engine.advance(now)
            next_at = self.engine.next_event_at()
            timeout = 0.5 if next_at is None else min(0.5, max(0.001, next_at - now))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    def base_url(self, request: Request) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def get_state(request: Request) -> SimState:
    state = request.app.state.sim
    assert isinstance(state, SimState)
    return state
