"""The poller's port to Runway (retrieve and delete a task) and its adapter on the SDK.

Both calls are safe to repeat. They raise :class:`~vidgen_runway.errors.RunwayCallError`
(with a verdict) on failure; handlers never see SDK or httpx exceptions. Task bodies are
mapped to :class:`TaskView`, so fakes need not build SDK models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from runwayml.types import TaskRetrieveResponse
from runwayml.types.task_retrieve_response import (
    Failed,
    Pending,
    Running,
    Succeeded,
    Throttled,
)

from vidgen_runway.sdk import SdkAdapter

Status = Literal["PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
ActiveStatus = Literal["PENDING", "THROTTLED", "RUNNING"]
ACTIVE: tuple[Status, ...] = ("PENDING", "THROTTLED", "RUNNING")


@dataclass(frozen=True)
class TaskView:
    """One ``GET /v1/tasks/{id}`` answer."""

    id: str
    status: Status
    progress: float | None = None
    output: tuple[str, ...] = ()
    failure: str | None = None
    failure_code: str | None = None
    cost_credits: int | None = None
    estimated_cost_credits: int | None = None

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE


def view_of(task: TaskRetrieveResponse) -> TaskView:
    """The :class:`TaskView` of an SDK task (one of its six status variants)."""
    if isinstance(task, Pending | Throttled):
        return TaskView(
            task.id, task.status, estimated_cost_credits=round(task.estimated_cost.credits)
        )
    if isinstance(task, Running):
        return TaskView(
            task.id,
            task.status,
            progress=task.progress,
            estimated_cost_credits=round(task.estimated_cost.credits),
        )
    if isinstance(task, Succeeded):
        return TaskView(
            task.id, task.status, output=tuple(task.output), cost_credits=task.cost.credits
        )
    if isinstance(task, Failed):
        return TaskView(
            task.id,
            task.status,
            failure=task.failure,
            failure_code=task.failure_code,
            cost_credits=task.cost.credits,
        )
    return TaskView(task.id, task.status, cost_credits=task.cost.credits)


class RunwayTasks(Protocol):
    """What the poller asks of Runway."""

    async def retrieve(self, task_id: str) -> TaskView:
        """The task's current state."""

    async def delete(self, task_id: str) -> None:
        """Cancel a running task (or delete a finished one)."""


class SdkRunwayTasks(SdkAdapter):
    """:class:`RunwayTasks` on ``AsyncRunwayML`` (SDK retries off: we schedule our own)."""

    async def retrieve(self, task_id: str) -> TaskView:
        try:
            task = await self._client.tasks.retrieve(task_id)
        except Exception as exc:
            raise self._failed("retrieve", exc) from exc
        self._count("retrieve", "ok")
        return view_of(task)

    async def delete(self, task_id: str) -> None:
        try:
            await self._client.tasks.delete(task_id)
        except Exception as exc:
            raise self._failed("delete", exc) from exc
        self._count("delete", "ok")
