"""One submission: from a claimed row to a recorded Runway task (or a retry, or a failure).

:meth:`TaskCreator.submit` prepares the prompt image, commits ``claimed → intent``
(compare-and-set on the claim token: a cancelled or re-claimed row is left alone), sends the
create once, then commits the task id with ``TaskSubmitted``. When Runway definitely created
nothing, the row is retried at ``retry_at`` (429 honouring ``Retry-After``, 5xx, unreachable:
backoff with jitter, up to ``max_create_tries``) or failed with Runway's reason. When the
outcome is unknown, :meth:`TaskCreator.apply_unknown` applies ``unknown_submission_policy``.
A cancel requested meanwhile wins over any retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.events import GenerationCancelled, GenerationFailed, TaskSubmitted
from vidgen_common.runway import (
    MODERATION_USER_MESSAGE,
    Classified,
    RunwayCallError,
    Verdict,
    backoff_delay,
    estimated_credits,
)
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.errors import ImageUnavailable
from vidgen_generator.image import PromptImages
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.runway import CreateRequest, RunwayClient
from vidgen_generator.settings import GeneratorSettings

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
        on_rate_limited: Callable[[datetime], None] = lambda _: None,
        rng: random.Random | None = None,
    ) -> None:
        self._uow = uow
        self._runway = runway
        self._images = images
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._on_rate_limited = on_rate_limited
        self._rng = rng or random.Random()

    async def submit(self, row: Submission, token: str) -> None:
        tries = row.tries + 1
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
        now = self._clock()
        async with self._uow() as uow:
            ok = await self._move(
                uow.session, row, "claimed", token, "intent", intent_at=now, tries=tries
            )
            await uow.commit()
        if not ok:
            log.info("%s/%d was cancelled or re-claimed", row.generation_id, row.attempt)
            return
        request = CreateRequest(
            model=row.model,
            prompt_image=image,
            prompt_text=row.prompt,
            ratio=row.ratio,
            duration=row.duration,
            seed=row.seed,
        )
        try:
            task_id = await self._runway.create(request)
        except RunwayCallError as exc:
            c = exc.classified
            if c.verdict is Verdict.UNKNOWN:
                async with self._uow() as uow:
                    row.tries = tries
                    await self.apply_unknown(uow, row, token, "no_response", c.message)
                    await uow.commit()
            else:
                await self._not_created(row, token, "intent", c, tries)
            return
        await self._record(row, token, task_id)

    # -- after the create ----------------------------------------------------------------------

    async def _record(self, row: Submission, token: str, task_id: str) -> None:
        """Commit the task id and TaskSubmitted; insists, since the task is paid for."""
        for i in range(6):
            try:
                await self._record_once(row, token, task_id)
                return
            except Exception:
                log.warning("recording task %s failed, retrying", task_id, exc_info=True)
                await asyncio.sleep(min(5.0, 0.25 * 2**i))
        self._metrics.orphaned.inc()
        log.error(
            "Runway task %s of generation %s/%d was created but could not be recorded",
            task_id,
            row.generation_id,
            row.attempt,
        )

    async def _record_once(self, row: Submission, token: str, task_id: str) -> None:
        now = self._clock()
        estimate = estimated_credits(row.model, row.duration)
        async with self._uow() as uow:
            ok = await self._move(
                uow.session,
                row,
                "intent",
                token,
                "submitted",
                runway_task_id=task_id,
                submitted_at=now,
                estimated_cost_credits=estimate,
                claim_token=None,
                error_code=None,
                error_message=None,
            )
            if ok:
                uow.emit(
                    TaskSubmitted(
                        generation_id=row.generation_id,
                        user_id=row.user_id,
                        runway_task_id=task_id,
                        model=row.model,
                        duration=row.duration,
                        attempt=row.attempt,
                        estimated_cost_credits=estimate,
                        submitted_at=now,
                    )
                )
            await uow.commit()
        if ok:
            self._metrics.submitted.labels(row.model).inc()
            log.info("generation %s: Runway task %s", row.generation_id, task_id)
            return
        self._metrics.orphaned.inc()
        log.error(
            "Runway task %s of generation %s/%d arrived after its intent was given up",
            task_id,
            row.generation_id,
            row.attempt,
        )

    async def _not_created(
        self, row: Submission, token: str, from_state: str, c: Classified, tries: int
    ) -> None:
        """Runway definitely created no task: honour a cancel, retry later, or fail."""
        now = self._clock()
        async with self._uow() as uow:
            session = uow.session
            if await store.is_cancelled(session, row.generation_id):
                if await self._move(
                    session, row, from_state, token, "cancelled", claim_token=None, tries=tries
                ):
                    uow.emit(cancelled(row, now))
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

    async def apply_unknown(
        self, uow: UnitOfWork, row: Submission, token: str | None, cause: str, detail: str
    ) -> None:
        """The create may have made a task we hold no id for: apply the policy (in ``uow``)."""
        policy = self._s.unknown_submission_policy
        self._metrics.submission_unknown.labels(cause, policy).inc()
        now = self._clock()
        session = uow.session
        if await store.is_cancelled(session, row.generation_id):
            if await self._move(
                session,
                row,
                "intent",
                token,
                "cancelled",
                claim_token=None,
                error_code=SUBMISSION_UNKNOWN,
                error_message=detail,
            ):
                uow.emit(cancelled(row, now))
            return
        if policy == "resubmit" and row.tries < self._s.max_create_tries:
            log.warning(
                "create of %s/%d has no known outcome (%s); resubmitting: Runway may now "
                "hold two tasks for it",
                row.generation_id,
                row.attempt,
                detail,
            )
            await self._move(
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
            return
        message = (
            f"Runway's answer to the create was lost ({detail}). Runway may have created a "
            "task whose id vidgen never received; vidgen does not create a second one, so as "
            "not to pay twice."
        )
        log.error("generation %s: %s", row.generation_id, message)
        if await self._move(
            session,
            row,
            "intent",
            token,
            "failed",
            claim_token=None,
            error_code=SUBMISSION_UNKNOWN,
            error_message=message,
        ):
            c = Classified(Verdict.UNKNOWN, SUBMISSION_UNKNOWN, message)
            total = await store.total_cost(session, row.generation_id)
            uow.emit(failed(row, c, message, total, now))

    # -- helpers -------------------------------------------------------------------------------

    async def _move(
        self,
        session: AsyncSession,
        row: Submission,
        from_state: str,
        token: str | None,
        to_state: str,
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
