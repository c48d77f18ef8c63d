"""The delivery loop: claim due deliveries, sign, send, record, decide.

It is :class:`vidgen_common.workloop.WorkLoop` over the ``deliveries`` table
(:func:`vidgen_notifier.store.claim_due`, one statement: due rows whose earlier deliveries to
the same endpoint for the same generation are done, leased under a fresh token, the attempt
counted and opened). For each claimed row :meth:`Deliverer.deliver`:

1. reads the endpoint and the secrets in force (its own, or the user's for a generate
   request's ``webhookUrl``; the previous one too during a rotation's overlap);
2. builds the body ``{type, timestamp, data}``, presigning the video and poster links for
   ``VIDGEN_WEBHOOK_LINK_TTL_S``, and signs it for this attempt's time (``v1`` per secret,
   ``v1a`` with the deployment's key) under the row's stable ``webhook-id``;
3. checks the URL again (the policy may have changed since it was registered), sends it
   (:mod:`vidgen_notifier.sender`), then records the attempt and applies
   :func:`vidgen_notifier.outcomes.decide` in one transaction, only while its token still
   holds the claim.

A replica killed between 2 and 3 leaves the row leased: it comes due again when the lease
(``VIDGEN_WEBHOOK_LEASE_S``) runs out, with the same ``webhook-id``, its open attempt marked
interrupted. The receiver may have seen it already: the same id lets it drop the duplicate.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_common.storage import Storage
from vidgen_common.webhook_targets import TargetRefused, check_url
from vidgen_common.workloop import WorkLoop, WorkSpec
from vidgen_notifier import store
from vidgen_notifier.metrics import NotifierMetrics
from vidgen_notifier.models import Delivery, Endpoint
from vidgen_notifier.outcomes import Answer, decide
from vidgen_notifier.sender import Sender
from vidgen_notifier.settings import NotifierSettings
from vidgen_notifier.signing import SigningKey, signature_header
from vidgen_notifier.vault import Vault

log = logging.getLogger(__name__)

_OUTCOME = {"delivered": "delivered", "retry": "retried", "disable": "gone", "give_up": "gave_up"}


def secrets_in_force(
    vault: Vault,
    owner: str,
    current: str | None,
    previous: str | None,
    previous_expires_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until it expires."""
    found = [vault.open(current, owner)] if current else []
    if previous and previous_expires_at is not None and previous_expires_at > now:
        found.append(vault.open(previous, owner))
    return found


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Deliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sender: Sender,
        storage: Storage | None,
        vault: Vault,
        key: SigningKey,
        settings: NotifierSettings,
        metrics: NotifierMetrics,
        *,
        tracer: Tracer | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._sender = sender
        self._storage = storage
        self._vault = vault
        self._key = key
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._reported_at = -1e9
        spec: WorkSpec[Delivery] = WorkSpec(
            name="delivery",
            claim=self._claim,
            handle=self.deliver,
            next_due_at=self._next_due_at,
            key=lambda row: row.id,
            describe=lambda row: f"delivery {row.id} ({row.webhook_id})",
            span_name="deliver webhook",
            span_attributes=lambda row: {
                "vidgen.webhook_id": row.webhook_id,
                "vidgen.endpoint_id": row.endpoint_id,
                "vidgen.event_type": row.event_type,
            },
            after_pass=self.report,
        )
        self._loop = WorkLoop(
            spec,
            concurrency=settings.webhook_max_concurrent,
            idle_s=settings.webhook_idle_s,
            min_sleep_s=0.01,
            idle_when_full=True,
            drain_timeout_s=settings.webhook_timeout_s + 5,
            tracer=tracer,
            clock=clock,
        )
        self.wake = self._loop.wake

    async def run(self, stop: Any) -> None:
        await self._loop.run(stop)

    async def run_once(self) -> int:
        return await self._loop.run_once()

    async def idle(self) -> None:
        await self._loop.idle()

    async def _claim(self, free: int) -> Sequence[tuple[Delivery, str]]:
        async with self._sessions() as s, s.begin():
            rows, token = await store.claim_due(s, self._clock(), free, self._s.webhook_lease_s)
        return [(r, token) for r in rows]

    async def _next_due_at(self) -> datetime | None:
        async with self._sessions() as s:
            return await store.next_due_at(s)

    async def report(self) -> None:
        """The oldest-pending gauge, read at most once a second (a pass runs per delivery)."""
        now_s = time.monotonic()
        if now_s - self._reported_at < 1.0:
            return
        self._reported_at = now_s
        async with self._sessions() as s:
            oldest = await store.oldest_pending(s)
        age = 0.0 if oldest is None else (self._clock() - oldest).total_seconds()
        self._metrics.oldest_pending.set(max(0.0, age))

    # -- one delivery ---------------------------------------------------------------------------

    async def _signing_secrets(self, s: AsyncSession, ep: Endpoint, now: datetime) -> list[str]:
        if ep.kind == "request":
            us = await store.user_secret(s, ep.user_id)
            if us is None:
                return []
            return secrets_in_force(
                self._vault,
                ep.user_id,
                us.secret_sealed,
                us.previous_secret_sealed,
                us.previous_expires_at,
                now,
            )
        return secrets_in_force(
            self._vault,
            ep.id,
            ep.secret_sealed,
            ep.previous_secret_sealed,
            ep.previous_expires_at,
            now,
        )

    def body(self, row: Delivery, now: datetime) -> bytes:
        data = dict(row.data)
        keys = data.pop("_keys", None) or {}
        if self._storage is not None:
            ttl = self._s.webhook_link_ttl_s
            if keys.get("video"):
                data["videoUrl"] = self._storage.presigned_get(keys["video"], ttl)
                data["videoUrlExpiresAt"] = _iso(now + timedelta(seconds=ttl))
            if keys.get("thumbnail"):
                data["thumbnailUrl"] = self._storage.presigned_get(keys["thumbnail"], ttl)
        payload = {"type": row.event_type, "timestamp": _iso(row.occurred_at), "data": data}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    async def deliver(self, row: Delivery, token: str) -> None:
        now = self._clock()
        async with self._sessions() as s:
            ep = await store.endpoint(s, row.endpoint_id)
            if ep is None:
                return  # deleted meanwhile (its deliveries went with it)
            signing = await self._signing_secrets(s, ep, now)
        answer: Answer
        started = time.monotonic()
        try:
            url = check_url(ep.url, production=self._s.production, allowed=self._s.allowed_targets)
        except TargetRefused as exc:
            answer = Answer(error=f"refused: {exc}")
        else:
            # a user who never asked for their own secret is still sent webhooks, signed v1a
            body = self.body(row, now)
            stamp = int(now.timestamp())
            headers = {
                "content-type": "application/json",
                "user-agent": "vidgen-webhooks/1",
                "webhook-id": row.webhook_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature_header(
                    signing, self._key, row.webhook_id, stamp, body
                ),
            }
            answer = await self._sender.send(url, headers, body)
        latency_ms = int((time.monotonic() - started) * 1000)
        self._metrics.latency.observe(latency_ms / 1000)
        await self.record(row, token, answer, latency_ms)

    async def record(self, row: Delivery, token: str, answer: Answer, latency_ms: int) -> None:
        """Write the attempt and the decision in one transaction, only while ``token`` still
        holds the claim. ``row.attempts`` is the count the claim made: while the token holds,
        nothing else changed it."""
        now = self._clock()
        decision = decide(
            answer, row.attempts, now, scale=self._s.webhook_schedule_scale, rand=self._rand()
        )
        status = {"delivered": "delivered", "retry": "pending", "give_up": "failed"}.get(
            decision.kind, "disabled"
        )
        async with self._sessions() as s, s.begin():
            held = await store.record_attempt(
                s,
                row.id,
                token,
                now=now,
                status=status,
                status_code=answer.status_code,
                latency_ms=latency_ms,
                error=decision.error,
                next_attempt_at=decision.next_attempt_at if decision.kind == "retry" else None,
            )
            if not held:
                log.warning("delivery %s: claim lost before its result was written", row.id)
                return
            if decision.kind in ("disable", "give_up"):
                await store.disable_endpoint(s, row.endpoint_id, decision.reason or "", now)
                log.warning("endpoint %s disabled: %s", row.endpoint_id, decision.reason)
        self._metrics.deliveries.labels(_OUTCOME[decision.kind]).inc()
        if decision.kind == "delivered":
            self.wake.set()  # the generation's next delivery may be claimed now
