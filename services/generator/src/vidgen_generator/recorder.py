"""After a create: the task id Runway returned is recorded, whatever it takes.

A task id is a paid video, and Runway offers no way to find it again. So
:meth:`TaskRecorder.record`:

- commits ``intent → submitted`` with ``TaskSubmitted`` (its ``model_concurrency`` is the
  model's budget at that moment; compare-and-set on the claim token, under the generation's
  lock), retrying for as long as the database is away (capped backoff,
  ``record_retry_cap_s``); shutdown waits for it (see :mod:`vidgen_generator.submitter`);
- when the intent was given up meanwhile (its replica was taken for dead, the policy ran),
  reconciles instead of dropping the id:

  ===========================  ==================================================================
  the row is now              what happens to the task id
  ===========================  ==================================================================
  ``pending`` / ``claimed``    recorded on that row (the resubmission it was waiting for), so no
                               second create is sent: ``TaskSubmitted``; ``adopted``
  ``submitted`` with this id   already recorded (a commit whose answer was lost): nothing
  anything else                (failed, cancelled, or another task): written to ``late_tasks``
                               and cancelled at Runway (``tasks.delete``); ``cancelled``, or
                               retried by the sweep until ``cancel_failed``
  ===========================  ==================================================================

Every late task is counted in ``vidgen_generator_late_tasks_total{outcome}`` and logged at
ERROR with its generation and task id.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vidgen_common.backoff import backoff_delay
from vidgen_common.db import lock_generation
from vidgen_common.events import TaskSubmitted
from vidgen_common.transient import is_transient
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.runway import RunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_runway.catalog import estimated_credits
from vidgen_runway.errors import RunwayCallError

log = logging.getLogger(__name__)

# Non-transient failures of the recording (a bug, a constraint) are tried this often before
# the task is cancelled at Runway instead; transient ones are retried for ever.
_PERMANENT_TRIES = 5
# Cancels of a late task: tries (one per sweep, a minute apart) before giving up.
LATE_CANCEL_TRIES = 10
LATE_CANCEL_RETRY_S = 60.0


class TaskRecorder:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        runway: RunwayClient,
        settings: GeneratorSettings,
        metrics: GeneratorMetrics,
        *,
        clock: Callable[[], datetime],
        concurrency: Callable[[str], int | None] = lambda _: None,
        rng: random.Random | None = None,
    ) -> None:
        """``concurrency``: a model's budget now (``Budget.limit``), told on TaskSubmitted."""
        self._uow = uow
        self._concurrency = concurrency
        self._runway = runway
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()

    async def record(self, row: Submission, token: str, task_id: str) -> None:
        """Record ``task_id`` for ``row`` (see the module docstring); returns once it is safe."""
        transient = permanent = 0
        while True:
            try:
                late = await self._record_once(row, token, task_id)
                break
            except Exception as exc:
                if is_transient(exc):
                    transient += 1
                    tries = transient
                    if transient <= 3 or transient % 20 == 0:
                        log.warning(
                            "recording Runway task %s of %s failed (try %d), retrying until the "
                            "database answers: %r",
                            task_id,
                            row.generation_id,
                            transient,
                            exc,
                        )
                else:
                    permanent += 1
                    tries = permanent
                    log.exception(
                        "recording Runway task %s of %s failed", task_id, row.generation_id
                    )
                    if permanent >= _PERMANENT_TRIES:
                        await self._unrecordable(row, task_id, repr(exc))
                        return
                await asyncio.sleep(
                    backoff_delay(
                        tries, base_s=0.2, cap_s=self._s.record_retry_cap_s, rng=self._rng
                    )
                )
        if late is not None:
            await self.cancel_late(task_id, row.generation_id, late, tries=0)

    async def _record_once(self, row: Submission, token: str, task_id: str) -> str | None:
        """One try; returns the reason when the task must be cancelled instead (late task)."""
        now = self._clock()
        estimate = estimated_credits(row.model, row.duration)
        recorded: dict[str, Any] = {
            "runway_task_id": task_id,
            "submitted_at": now,
            "estimated_cost_credits": estimate,
            "claim_token": None,
            "lease_until": None,
            "error_code": None,
            "error_message": None,
        }
        gid = row.generation_id
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, gid)
            ok = await store.transition(
                session, gid, row.attempt, from_state="intent", token=token,
                to_state="submitted", now=now, **recorded,
            )  # fmt: skip
            late: str | None = None
            adopted = False
            if not ok:
                current = await store.get(session, gid, row.attempt)
                if current is not None and current.state in ("pending", "claimed"):
                    ok = adopted = await store.transition(
                        session, gid, row.attempt, from_state=current.state, token=None,
                        to_state="submitted", now=now, **recorded,
                    )  # fmt: skip
                elif current is not None and current.runway_task_id == task_id:
                    return None  # recorded by an earlier try whose commit answer was lost
                if not ok:
                    late = "missing" if current is None else current.state
                    await store.add_late_task(session, task_id, gid, row.attempt, late)
            if ok:
                uow.emit(
                    TaskSubmitted(
                        generation_id=gid,
                        user_id=row.user_id,
                        runway_task_id=task_id,
                        model=row.model,
                        duration=row.duration,
                        attempt=row.attempt,
                        estimated_cost_credits=estimate,
                        submitted_at=now,
                        model_concurrency=self._model_concurrency(row.model),
                    )
                )
            await uow.commit()
        if ok:
            self._metrics.submitted.labels(row.model).inc()
            if adopted:
                self._metrics.late_tasks.labels("adopted").inc()
                log.warning(
                    "Runway task %s of generation %s/%d came back after its intent was given up; "
                    "recorded on the row waiting to be created again (no second create)",
                    task_id,
                    gid,
                    row.attempt,
                )
            else:
                log.info("generation %s: Runway task %s", gid, task_id)
            return None
        log.error(
            "Runway task %s of generation %s/%d came back after its intent was given up and "
            "the generation is now %s: cancelling the task at Runway",
            task_id,
            gid,
            row.attempt,
            late,
        )
        return late

    def _model_concurrency(self, model: str) -> int | None:
        """The model's budget when the task was submitted; None when there is no limit (a
        budget of 0, lowered while the create was in flight, says nothing useful either)."""
        limit = self._concurrency(model)
        return limit if limit is not None and limit >= 1 else None

    async def _unrecordable(self, row: Submission, task_id: str, error: str) -> None:
        """The database refuses the recording for good: cancel the task rather than lose it
        silently (the intent stays; the sweep applies the unknown-submission policy)."""
        log.error(
            "Runway task %s of generation %s/%d cannot be recorded (%s): cancelling it at Runway",
            task_id,
            row.generation_id,
            row.attempt,
            error,
        )
        await self.cancel_late(task_id, row.generation_id, "unrecordable", tries=0, stored=False)

    async def cancel_late(
        self, task_id: str, generation_id: str, reason: str, *, tries: int, stored: bool = True
    ) -> None:
        """Cancel a late task at Runway and note the outcome (``tries`` made before)."""
        outcome, error = "cancelled", None
        try:
            await self._runway.cancel(task_id)
        except RunwayCallError as exc:
            c = exc.classified
            if c.code != "runway_not_found":  # gone already: as good as cancelled
                error = c.message
                last = not c.retryable or not stored or tries + 1 >= LATE_CANCEL_TRIES
                outcome = "cancel_failed" if last else "to_cancel"
        if outcome == "cancelled":
            log.error(
                "late Runway task %s of generation %s (%s) was cancelled at Runway",
                task_id,
                generation_id,
                reason,
            )
        elif outcome == "cancel_failed":
            log.error(
                "late Runway task %s of generation %s (%s) could not be cancelled (%s): it may "
                "run and be charged; delete it by hand",
                task_id,
                generation_id,
                reason,
                error,
            )
        else:
            log.warning("cancel of late task %s failed, retried later: %s", task_id, error)
        if outcome != "to_cancel":
            self._metrics.late_tasks.labels(outcome).inc()
        if not stored:
            return
        try:
            async with self._uow() as uow:
                await store.set_late_outcome(uow.session, task_id, outcome, error)
                await uow.commit()
        except Exception as exc:  # the row stays to_cancel: the sweep tries again (a 404 is fine)
            log.warning("could not note the cancel of late task %s: %r", task_id, exc)

    async def retry_late_cancels(self) -> None:
        """The sweep's part: late tasks whose cancel failed are tried again."""
        async with self._uow() as uow:
            due = await store.late_tasks_to_cancel(uow.session, LATE_CANCEL_RETRY_S)
        for task_id, gid, tries in due:
            await self.cancel_late(task_id, gid, "retried", tries=tries)
