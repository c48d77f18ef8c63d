"""One submission: from a claimed row to a recorded Runway task (or a retry, or a failure).

:meth:`TaskCreator.submit` prepares the prompt image, commits ``claimed → intent`` under the
generation's lock (compare-and-set on the claim token; a cancelled or re-claimed row is left
alone, and a cancel recorded meanwhile ends the row ``cancelled`` before anything reaches
Runway), with this replica as the intent's ``owner`` and the database's ``now()`` as
``intent_at``; sends the create once (bounded in all by ``create_deadline_s``), then hands the
task id to :class:`~vidgen_generator.recorder.TaskRecorder`, which records it whatever it
takes. When Runway definitely created nothing, the row is retried at ``retry_at`` (429
honouring ``Retry-After``, 502/503, unreachable: backoff with jitter, up to
``max_create_tries``), held (Runway's daily cap and the organisation's credits: back to
``pending`` with a wait reason, see :mod:`vidgen_generator.holds`) or failed with Runway's
reason (other 4xx). Any other answer (500, 504,
408, a timeout, an unreadable body) may come after the task was created and charged:
:meth:`TaskCreator.apply_unknown` applies ``unknown_submission_policy``. A cancel requested
meanwhile wins over any retry. Once the process is stopping, a claimed row goes back to
``pending`` instead of being sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.backoff import backoff_delay
from vidgen_common.db import lock_generation
from vidgen_common.events import GenerationCancelled, GenerationFailed
from vidgen_common.transient import is_transient
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.errors import ImageUnavailable
from vidgen_generator.holds import DAILY_LIMIT, cost, is_out_of_credits, waiting
from vidgen_generator.image import PromptImages
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.recorder import TaskRecorder
from vidgen_generator.runway import CreateRequest, RunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE, Classified, Verdict

log = logging.getLogger(__name__)

UowFactory = Callable[[], UnitOfWork]
SUBMISSION_UNKNOWN = "submission_unknown"


class TaskCreator:
    def __init__(
        self,
        uow: UowFactory,
        runway: RunwayClient,
        images: PromptImages,
        settings: GeneratorSettings,
        metrics: GeneratorMetrics,
        *,
        clock: Callable[[], datetime],
        recorder: TaskRecorder,
        instance_id: str,
        stopping: Callable[[], bool] = lambda: False,
        on_rate_limited: Callable[[datetime], None] = lambda _: None,
        on_out_of_credits: Callable[[int | None], None] = lambda _: None,
        rng: random.Random | None = None,
    ) -> None:
        """``on_out_of_credits(price)``: a create was refused for the organisation's credits
        (re-read the balance, hold what it does not cover)."""
        self._uow = uow
        self._runway = runway
        self._images = images
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self.recorder = recorder
        self._instance_id = instance_id
        self._stopping = stopping
        self._on_rate_limited = on_rate_limited
        self._on_out_of_credits = on_out_of_credits
        self._rng = rng or random.Random()

    async def submit(self, row: Submission, token: str) -> None:
        tries = row.tries + 1
        stamps: dict[str, object] = {"generation_id": row.generation_id, "begun": time.time()}
        try:
            image = await self._images.prompt_image(row.image_key, row.image_content_type)
        except ImageUnavailable as exc:
            verdict = Verdict.PERMANENT if exc.permanent else Verdict.RETRY
            code = "image_missing" if exc.permanent else "image_store_unavailable"
            c = Classified(verdict, code, str(exc))
            await self._not_created(row, token, "claimed", c, tries)
            return
        except RunwayCallError as exc:  # the ephemeral upload: repeatable, creates no task
            c = exc.classified
            if c.verdict is Verdict.UNKNOWN:
                c = replace(c, verdict=Verdict.RETRY)
            await self._not_created(row, token, "claimed", c, tries)
            return
        stamps["image"] = time.time()
        if not await self._commit_intent(row, token, tries):
            return
        stamps["intent"] = time.time()
        request = CreateRequest(
            model=row.model,
            prompt_image=image,
            prompt_text=row.prompt,
            ratio=row.ratio,
            duration=row.duration,
            seed=row.seed,
        )
        try:
            task_id = await self._create(request)
        except RunwayCallError as exc:
            c = exc.classified
            row.tries = tries
            if c.verdict is Verdict.UNKNOWN:
                cause = "no_response" if c.code == "runway_no_response" else "error_answer"
                await self._insist(lambda: self._unknown(row, token, cause, c.message))
            else:
                await self._insist(lambda: self._not_created(row, token, "intent", c, tries))
            return
        stamps["created"] = time.time()
        await self.recorder.record(row, token, task_id)
        stamps["recorded"] = time.time()
        log.info("task %s created and recorded", task_id, extra={"timings": stamps})

    async def _unknown(self, row: Submission, token: str, cause: str, detail: str) -> None:
        async with self._uow() as uow:
            applied = await self.apply_unknown(uow, row, token, detail)
            await uow.commit()
        if applied:
            self.count_unknown(cause)

    async def _insist(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` (the outcome of a create already sent) until the database takes it:
        left undone, the intent would later be taken for abandoned and fail the generation."""
        tries = 0
        while True:
            try:
                await step()
                return
            except Exception as exc:
                tries += 1
                if not is_transient(exc):
                    raise
                if tries <= 3 or tries % 20 == 0:
                    log.warning("recording a create's outcome failed (try %d): %r", tries, exc)
                cap = self._s.record_retry_cap_s
                await asyncio.sleep(backoff_delay(tries, base_s=0.2, cap_s=cap, rng=self._rng))

    async def _commit_intent(self, row: Submission, token: str, tries: int) -> bool:
        """``claimed → intent`` (owned by this replica), unless the row must not be sent."""
        now = self._clock()
        gid = row.generation_id
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, gid)
            if self._stopping():  # shutting down: leave it to a replica that stays
                await self._move(
                    session, row, "claimed", token, "pending", claim_token=None, lease_until=None
                )
                await uow.commit()
                log.info("%s/%d released: the process is stopping", gid, row.attempt)
                return False
            if await store.CANCELS.is_cancelled(session, gid):
                if await self._move(session, row, "claimed", token, "cancelled", claim_token=None):
                    uow.emit(cancelled(row, now))
                await uow.commit()
                log.info("%s/%d was cancelled before its create", gid, row.attempt)
                return False
            ok = await self._move(
                session, row, "claimed", token, "intent", db_now=("intent_at",), tries=tries,
                owner=self._instance_id,
            )  # fmt: skip
            await store.heartbeat(session, self._instance_id)  # the owner is known alive
            await uow.commit()
        if not ok:
            log.info("%s/%d was cancelled or re-claimed", gid, row.attempt)
        return ok

    async def _create(self, request: CreateRequest) -> str:
        """The create, bounded in all (the SDK's timeouts bound each read, not the call)."""
        try:
            return await asyncio.wait_for(
                self._runway.create(request), timeout=self._s.create_deadline_s
            )
        except TimeoutError as exc:
            c = Classified(
                Verdict.UNKNOWN,
                "runway_no_response",
                f"no answer to the create within {self._s.create_deadline_s:.0f} s",
            )
            raise RunwayCallError(c) from exc

    # -- when nothing (or something unknown) was created ----------------------------------------

    async def _not_created(
        self, row: Submission, token: str, from_state: str, c: Classified, tries: int
    ) -> None:
        """Runway definitely created no task: honour a cancel, retry later, or fail."""
        now = self._clock()
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, row.generation_id)
            if await store.CANCELS.is_cancelled(session, row.generation_id):
                if await self._move(
                    session, row, from_state, token, "cancelled", claim_token=None, tries=tries
                ):
                    uow.emit(cancelled(row, now))
            elif c.code == DAILY_LIMIT or is_out_of_credits(c):
                await self._hold(uow, row, from_state, token, c, now)
            elif c.verdict is Verdict.RETRY and tries < self._s.max_create_tries:
                delay = self._backoff(tries, c.retry_after_s)
                await self._move(
                    session,
                    row,
                    from_state,
                    token,
                    "pending",
                    retry_at=now + timedelta(seconds=delay),
                    claim_token=None,
                    lease_until=None,
                    tries=tries,
                    error_code=c.code,
                    error_message=c.message,
                )
                self._metrics.deferred.labels(c.code).inc()
                if c.code == "runway_rate_limited" and c.retry_after_s:
                    self._on_rate_limited(now + timedelta(seconds=c.retry_after_s))
                log.info("create of %s deferred %.1f s: %s", row.generation_id, delay, c.message)
            else:
                message = c.message
                if c.verdict is Verdict.RETRY:
                    message = f"gave up after {tries} tries: {message}"
                if await self._move(
                    session,
                    row,
                    from_state,
                    token,
                    "failed",
                    claim_token=None,
                    tries=tries,
                    error_code=c.code,
                    error_message=message,
                ):
                    total = await store.total_cost(session, row.generation_id)
                    uow.emit(failed(row, c, message, total, now))
            await uow.commit()

    async def _hold(
        self,
        uow: UnitOfWork,
        row: Submission,
        from_state: str,
        token: str,
        c: Classified,
        now: datetime,
    ) -> None:
        """Refused for the daily cap or the credits: nothing was created, so the row waits
        (``pending``, its tries not counted) with the reason; the pass holds the rest."""
        session = uow.session
        s = self._s
        if c.code == DAILY_LIMIT:
            reason = "daily_cap_reached"
            until: datetime | None = await store.daily_cap_until(
                session, row.model, now, s.daily_cap_recheck_s
            )
        else:
            reason = "organization_out_of_credits"
            # Held until the balance covers it; without the balance, tried again later.
            until = None
            if not s.watch_organization_credits:
                until = now + timedelta(seconds=s.daily_cap_recheck_s)
        moved = await self._move(
            session,
            row,
            from_state,
            token,
            "pending",
            retry_at=until or now,
            claim_token=None,
            lease_until=None,
            error_code=c.code,
            error_message=c.message,
            wait_reason=reason,
            wait_until=until,
        )
        if moved and row.wait_reason != reason:
            change = store.WaitChange(
                row.generation_id, row.attempt, row.user_id, row.model, row.wait_reason,
                reason, until,
            )  # fmt: skip
            uow.emit(waiting(change, now))
        self._metrics.deferred.labels(c.code).inc()
        if reason == "organization_out_of_credits":
            self._on_out_of_credits(cost(row))
        log.warning(
            "create of %s refused by Runway (%s); it waits%s: %s",
            row.generation_id,
            reason,
            f" until {until.isoformat()}" if until else "",
            c.message,
        )

    def count_unknown(self, cause: str) -> None:
        """Count one create of unknown outcome (after the policy was committed)."""
        self._metrics.submission_unknown.labels(cause, self._s.unknown_submission_policy).inc()

    async def apply_unknown(
        self, uow: UnitOfWork, row: Submission, token: str | None, detail: str
    ) -> bool:
        """The create may have made a task we hold no id for: apply the policy (in ``uow``);
        False if the row was no longer this intent."""
        policy = self._s.unknown_submission_policy
        now = self._clock()
        session = uow.session
        await lock_generation(session, row.generation_id)
        if await store.CANCELS.is_cancelled(session, row.generation_id):
            moved = await self._move(
                session,
                row,
                "intent",
                token,
                "cancelled",
                claim_token=None,
                error_code=SUBMISSION_UNKNOWN,
                error_message=detail,
            )
            if moved:
                uow.emit(cancelled(row, now))
            return moved
        if policy == "resubmit" and row.tries < self._s.max_create_tries:
            log.warning(
                "create of %s/%d has no known outcome (%s); resubmitting: Runway may now "
                "hold two tasks for it",
                row.generation_id,
                row.attempt,
                detail,
            )
            return await self._move(
                session,
                row,
                "intent",
                token,
                "pending",
                retry_at=now + timedelta(seconds=self._backoff(max(1, row.tries), None)),
                claim_token=None,
                lease_until=None,
                error_code=SUBMISSION_UNKNOWN,
                error_message=detail,
            )
        message = (
            f"No usable answer to the create ({detail}). Runway may have created a task "
            "whose id vidgen never received; vidgen does not create a second one, so as not "
            "to pay twice."
        )
        log.error("generation %s: %s", row.generation_id, message)
        moved = await self._move(
            session,
            row,
            "intent",
            token,
            "failed",
            claim_token=None,
            error_code=SUBMISSION_UNKNOWN,
            error_message=message,
        )
        if moved:
            c = Classified(Verdict.UNKNOWN, SUBMISSION_UNKNOWN, message)
            total = await store.total_cost(session, row.generation_id)
            uow.emit(failed(row, c, message, total, now))
        return moved

    # -- helpers -------------------------------------------------------------------------------

    async def _move(
        self,
        session: AsyncSession,
        row: Submission,
        from_state: str,
        token: str | None,
        to_state: str,
        db_now: tuple[str, ...] = (),
        **fields: object,
    ) -> bool:
        return await store.transition(
            session,
            row.generation_id,
            row.attempt,
            from_state=from_state,
            token=token,
            to_state=to_state,
            now=self._clock(),
            db_now=db_now,
            **fields,
        )

    def _backoff(self, tries: int, retry_after_s: float | None) -> float:
        return backoff_delay(
            tries,
            base_s=self._s.retry_base_s,
            cap_s=self._s.retry_cap_s,
            retry_after_s=retry_after_s,
            rng=self._rng,
        )


def cancelled(row: Submission, now: datetime, task_id: str | None = None) -> GenerationCancelled:
    return GenerationCancelled(
        generation_id=row.generation_id, stage="generator", runway_task_id=task_id, cancelled_at=now
    )


def failed(
    row: Submission,
    c: Classified,
    message: str,
    total_cost: int,
    now: datetime,
    task_id: str | None = None,
) -> GenerationFailed:
    """``GenerationFailed`` of the generator, with Runway's message and the cost so far."""
    return GenerationFailed(
        generation_id=row.generation_id,
        stage="generator",
        runway_task_id=task_id,
        error_code=c.code,
        error_message=message,
        user_message=MODERATION_USER_MESSAGE if c.verdict is Verdict.MODERATION else None,
        runway_failure_code=c.runway_failure_code,
        cost_credits=total_cost,
        failed_at=now,
    )
