"""The task state machine and its scheduler.

Life of a task (times drawn at creation from the scenario's seeded RNG):

    created ──slot free──▶ PENDING (queue_s) ──▶ RUNNING (run_s) ──▶ SUCCEEDED | FAILED
       └──slot taken──▶ THROTTLED ──a slot frees──▶ PENDING ...
    DELETE while PENDING/THROTTLED/RUNNING ──▶ CANCELLED; DELETE when finished ──▶ gone (404)

A "slot" is one of the organisation's `maxConcurrentGenerations` for the model; PENDING and
RUNNING tasks hold one, THROTTLED tasks wait for one in FIFO order.

State is advanced lazily: `advance(now)` replays every scheduled event up to `now` at the
event's own time (a throttled task starts exactly when its predecessor finished), so results do
not depend on how often anyone polls or on event-loop load. Callers advance before reading.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from runway_sim.failures import FailurePlan, plan_for
from runway_sim.params import CreateRequest


class Status(StrEnum):
    PENDING = "PENDING"
    THROTTLED = "THROTTLED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE = (Status.PENDING, Status.THROTTLED, Status.RUNNING)
AssetState = Literal["pending", "ok", "failed"]


@dataclass
class Task:
    id: str
    request: CreateRequest
    created_wall: datetime
    created_at: float
    queue_s: float
    run_s: float
    planned_failure: FailurePlan | None
    status: Status = Status.THROTTLED
    admitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    failure: FailurePlan | None = None
    cost: int | None = None
    asset: AssetState = "pending"
    asset_error: str | None = None
    awaiting_asset: bool = False
    image_hash: str | None = None
    history: list[tuple[float, Status]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # injected faults that touched it
    deleted_at: float | None = None  # a DELETE of the finished task removed it

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def credits(self) -> int:
        return self.request.credits

    def progress(self, now: float) -> float:
        if self.status is not Status.RUNNING or self.started_at is None:
            return 0.0
        if self.awaiting_asset or self.run_s <= 0:
            return 0.99
        return round(min(0.99, max(0.0, (now - self.started_at) / self.run_s)), 2)


EventKind = Literal["start", "finish"]


class TaskEngine:
    """Owns every task; all methods run on the server's event loop (no locking)."""

    def __init__(
        self,
        limit_for: Callable[[str], int | None],
        on_terminal: Callable[[Task], None],
        on_schedule: Callable[[], None] = lambda: None,
    ) -> None:
        self._limit_for = limit_for
        self._on_terminal = on_terminal
        self._on_schedule = on_schedule
        self.tasks: dict[str, Task] = {}
        self._events: list[tuple[float, int, str, EventKind]] = []
        self._seq = 0
        self._throttled: dict[str, deque[str]] = {}
        self._holders: dict[str, set[str]] = {}

    # -- reading -----------------------------------------------------------------------------

    def get(self, task_id: str, now: float) -> Task | None:
        self.advance(now)
        return self.tasks.get(task_id)

    def next_event_at(self) -> float | None:
        return self._events[0][0] if self._events else None

    def running_count(self, model: str) -> int:
        return len(self._holders.get(model, ()))

    # -- changes -----------------------------------------------------------------------------

    def add(self, task: Task, now: float) -> None:
        self.advance(now)
        self.tasks[task.id] = task
        self._throttled.setdefault(task.model, deque()).append(task.id)
        self._admit(task.model, task.created_at)
        if task.status is Status.THROTTLED:
            task.history.append((task.created_at, Status.THROTTLED))

    def advance(self, now: float) -> None:
        """Apply every event due by `now`, each at its own scheduled time."""
        while self._events and self._events[0][0] <= now:
            at, _, task_id, kind = heapq.heappop(self._events)
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if kind == "start" and task.status is Status.PENDING:
                self._start(task, at)
            elif kind == "finish" and task.status is Status.RUNNING:
                self._finish(task, at)

    def reconcile(self, now: float) -> None:
        """Admit throttled tasks after a limit was raised."""
        self.advance(now)
        for model in list(self._throttled):
            self._admit(model, now)

    def asset_ready(self, task_id: str, ok: bool, error: str | None, now: float) -> None:
        """The prompt image was fetched and decoded (or not)."""
        self.advance(now)
        task = self.tasks.get(task_id)
        if task is None:
            return
        task.asset, task.asset_error = ("ok" if ok else "failed"), error
        if task.status not in ACTIVE:
            return
        if not ok:
            self._end(task, now, Status.FAILED, plan_for("ASSET.INVALID", error))
        elif task.awaiting_asset:
            task.awaiting_asset = False
            self._finish(task, now)

    def cancel_or_delete(self, task_id: str, now: float) -> bool:
        """DELETE semantics: cancel an active task, forget a finished one. False if unknown."""
        self.advance(now)
        task = self.tasks.get(task_id)
        if task is None:
            return False
        if task.status in ACTIVE:
            self._end(task, now, Status.CANCELLED, None)
        else:
            task.deleted_at = now
            del self.tasks[task_id]
        return True

    # -- internals ---------------------------------------------------------------------------

    def _schedule(self, at: float, task_id: str, kind: EventKind) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, task_id, kind))
        self._on_schedule()

    def _admit(self, model: str, at: float) -> None:
        queue = self._throttled.get(model)
        holders = self._holders.setdefault(model, set())
        while queue:
            limit = self._limit_for(model)
            if limit is not None and len(holders) >= limit:
                return
            task = self.tasks.get(queue.popleft())
            if task is None or task.status is not Status.THROTTLED:
                continue
            holders.add(task.id)
            self._set(task, Status.PENDING, at)
            task.admitted_at = at
            self._schedule(at + task.queue_s, task.id, "start")

    def _start(self, task: Task, at: float) -> None:
        plan = task.planned_failure
        if plan is not None and plan.phase == "start":
            self._end(task, at, Status.FAILED, plan)
            return
        self._set(task, Status.RUNNING, at)
        task.started_at = at
        self._schedule(at + task.run_s, task.id, "finish")

    def _finish(self, task: Task, at: float) -> None:
        if task.asset == "pending":
            task.awaiting_asset = True  # finishes when the image is in (see asset_ready)
            return
        plan = task.planned_failure
        if plan is not None:
            self._end(task, at, Status.FAILED, plan)
        else:
            self._end(task, at, Status.SUCCEEDED, None)

    def _end(self, task: Task, at: float, status: Status, failure: FailurePlan | None) -> None:
        was_running = task.status is Status.RUNNING
        self._set(task, status, at)
        task.finished_at = at
        task.failure = failure
        task.awaiting_asset = False
        if status is Status.SUCCEEDED or (status is Status.CANCELLED and was_running):
            task.cost = task.credits
        else:
            task.cost = 0  # failures and cancellations before RUNNING are refunded
        holders = self._holders.get(task.model, set())
        if task.id in holders:
            holders.discard(task.id)
            self._admit(task.model, at)
        self._on_terminal(task)

    @staticmethod
    def _set(task: Task, status: Status, at: float) -> None:
        task.status = status
        task.history.append((at, status))
