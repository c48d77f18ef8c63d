"""What the webhooks API does: endpoints, secrets, the delivery log, pings and redeliveries.

Every read and change is scoped to the calling user: another user's endpoint is "not found"
(404), like every other resource of vidgen. Input is checked with the shared address policy
(:mod:`vidgen_common.webhook_targets`): 422 naming the field for a malformed URL, http in
production, a refused literal address, an unknown event type, or too many endpoints.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_common.webhook_targets import TargetRefused, check_events, check_url
from vidgen_notifier import store
from vidgen_notifier.errors import NotFound, Unprocessable
from vidgen_notifier.handlers import delivery_id
from vidgen_notifier.models import Delivery, Endpoint, UserSecret
from vidgen_notifier.schemas import (
    AttemptView,
    DeliveryPage,
    DeliveryView,
    EndpointCreate,
    EndpointCreated,
    EndpointPatch,
    EndpointView,
    Rotated,
    UserSecretView,
)
from vidgen_notifier.settings import NotifierSettings
from vidgen_notifier.signing import new_secret
from vidgen_notifier.vault import Vault


def view(ep: Endpoint) -> EndpointView:
    return EndpointView(
        id=ep.id,
        url=ep.url,
        events=list(ep.events),
        description=ep.description,
        enabled=ep.enabled,
        disabled_reason=ep.disabled_reason,
        created_at=ep.created_at,
    )


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"d{seq}".encode()).decode().rstrip("=")


def _seq(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("d"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable(
            "cursor", "not a cursor this API returned", code="invalid_cursor"
        ) from exc


class Webhooks:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: Vault,
        settings: NotifierSettings,
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._s = settings
        self._wake = wake
        self._clock = clock

    def _check_url(self, url: str) -> str:
        try:
            check_url(url, production=self._s.production, allowed=self._s.allowed_targets)
        except TargetRefused as exc:
            raise Unprocessable("url", str(exc), code="invalid_webhook_url") from exc
        return url

    @staticmethod
    def _check_events(events: list[str] | None) -> list[str]:
        try:
            return check_events(events)
        except TargetRefused as exc:
            raise Unprocessable("events", str(exc), code="invalid_webhook_events") from exc

    async def _owned(
        self, s: AsyncSession, user_id: str, endpoint_id: str, *, lock: bool = False
    ) -> Endpoint:
        ep = await store.endpoint(s, endpoint_id, user_id, lock=lock)
        if ep is None:
            raise NotFound()
        return ep

    # -- endpoints ------------------------------------------------------------------------------

    async def create(self, user_id: str, body: EndpointCreate) -> EndpointCreated:
        url = self._check_url(body.url)
        events = self._check_events(body.events)
        now = self._clock()
        secret = new_secret()
        ep_id = "ep_" + uuid.uuid4().hex
        async with self._sessions() as s, s.begin():
            await store.lock_user(s, user_id)
            limit = self._s.webhook_max_endpoints_per_user
            if await store.count_endpoints(s, user_id) >= limit:
                raise Unprocessable(
                    "url", f"at most {limit} endpoints per user", code="too_many_endpoints"
                )
            ep = Endpoint(
                id=ep_id,
                user_id=user_id,
                kind="registered",
                url=url,
                events=events,
                description=body.description,
                secret_sealed=self._vault.seal(secret, ep_id),
                created_at=now,
                updated_at=now,
            )
            s.add(ep)
        return EndpointCreated(**view(ep).model_dump(), secret=secret)

    async def list(self, user_id: str) -> list[EndpointView]:
        async with self._sessions() as s:
            return [view(ep) for ep in await store.list_endpoints(s, user_id)]

    async def get(self, user_id: str, endpoint_id: str) -> EndpointView:
        async with self._sessions() as s:
            return view(await self._owned(s, user_id, endpoint_id))

    async def patch(self, user_id: str, endpoint_id: str, body: EndpointPatch) -> EndpointView:
        now = self._clock()
        async with self._sessions() as s, s.begin():
            ep = await self._owned(s, user_id, endpoint_id, lock=True)
            if body.url is not None:
                ep.url = self._check_url(body.url)
            if "events" in body.model_fields_set:
                ep.events = self._check_events(body.events)
            if "description" in body.model_fields_set:
                ep.description = body.description
            ep.updated_at = now
            await s.flush()
            if body.enabled is True and not ep.enabled:
                await store.resume_endpoint(s, ep.id, now)
            elif body.enabled is False and ep.enabled:
                await store.disable_endpoint(s, ep.id, "disabled by its owner", now)
            await s.refresh(ep)
            result = view(ep)
        self._wake()
        return result

    async def delete(self, user_id: str, endpoint_id: str) -> None:
        async with self._sessions() as s, s.begin():
            if not await store.delete_endpoint(s, endpoint_id, user_id):
                raise NotFound()

    async def rotate(self, user_id: str, endpoint_id: str, overlap_s: int | None) -> Rotated:
        now = self._clock()
        overlap = self._s.webhook_rotate_overlap_s if overlap_s is None else overlap_s
        secret = new_secret()
        async with self._sessions() as s, s.begin():
            ep = await self._owned(s, user_id, endpoint_id, lock=True)
            expires = now + timedelta(seconds=overlap) if overlap > 0 else None
            ep.previous_secret_sealed = ep.secret_sealed if expires else None
            ep.previous_expires_at = expires
            ep.secret_sealed = self._vault.seal(secret, ep.id)
            ep.updated_at = now
        return Rotated(secret=secret, previous_secret_expires_at=expires)

    # -- the user's own secret (generate requests' webhookUrl) ------------------------------------

    async def user_secret(self, user_id: str) -> UserSecretView:
        now = self._clock()
        async with self._sessions() as s, s.begin():
            await store.lock_user(s, user_id)
            us = await store.user_secret(s, user_id, lock=True)
            if us is None:
                secret = new_secret()
                s.add(
                    UserSecret(
                        user_id=user_id,
                        secret_sealed=self._vault.seal(secret, user_id),
                        created_at=now,
                        updated_at=now,
                    )
                )
                return UserSecretView(secret=secret)
            expires = (
                us.previous_expires_at
                if us.previous_expires_at and us.previous_expires_at > now
                else None
            )
            return UserSecretView(
                secret=self._vault.open(us.secret_sealed, user_id),
                previous_secret_expires_at=expires,
            )

    async def rotate_user_secret(self, user_id: str, overlap_s: int | None) -> Rotated:
        await self.user_secret(user_id)  # made on first use
        now = self._clock()
        overlap = self._s.webhook_rotate_overlap_s if overlap_s is None else overlap_s
        secret = new_secret()
        async with self._sessions() as s, s.begin():
            us = await store.user_secret(s, user_id, lock=True)
            assert us is not None
            expires = now + timedelta(seconds=overlap) if overlap > 0 else None
            us.previous_secret_sealed = us.secret_sealed if expires else None
            us.previous_expires_at = expires
            us.secret_sealed = self._vault.seal(secret, user_id)
            us.updated_at = now
        return Rotated(secret=secret, previous_secret_expires_at=expires)

    # -- deliveries -----------------------------------------------------------------------------

    async def deliveries(
        self, user_id: str, endpoint_id: str, cursor: str | None, limit: int
    ) -> DeliveryPage:
        before = _seq(cursor) if cursor else None
        limit = max(1, min(limit, self._s.webhook_page_max))
        async with self._sessions() as s:
            await self._owned(s, user_id, endpoint_id)
            rows = list(await store.deliveries_page(s, endpoint_id, before, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
            attempts = await store.attempts_of(s, [r.id for r in rows])
        items = [
            DeliveryView(
                id=r.id,
                webhook_id=r.webhook_id,
                event_type=r.event_type,
                generation_id=r.generation_id or None,
                status=r.status,
                attempts=[
                    AttemptView(
                        at=a.at, status_code=a.status_code, latency_ms=a.latency_ms, error=a.error
                    )
                    for a in attempts.get(r.id, [])
                ],
                next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
                created_at=r.created_at,
            )
            for r in rows
        ]
        next_cursor = _cursor(rows[-1].seq or 0) if more and rows else None
        return DeliveryPage(items=items, next_cursor=next_cursor)

    async def ping(self, user_id: str, endpoint_id: str) -> str:
        now = self._clock()
        async with self._sessions() as s, s.begin():
            ep = await self._owned(s, user_id, endpoint_id)
            did = delivery_id()
            await store.insert_delivery(
                s,
                Delivery(
                    id=did,
                    webhook_id="msg_ping_" + uuid.uuid4().hex,
                    endpoint_id=ep.id,
                    user_id=user_id,
                    generation_id="",  # a ping belongs to no generation
                    event_id=None,
                    event_type="webhook.ping",
                    occurred_at=now,
                    data={"endpointId": ep.id, "message": "a test ping from vidgen"},
                    status="pending" if ep.enabled else "disabled",
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                ),
            )
        self._wake()
        return did

    async def redeliver(self, user_id: str, endpoint_id: str, original_id: str) -> str:
        """The same message again (same ``webhook-id``, as the spec's manual retry), as a new
        delivery with its own attempts, after the generation's other pending ones."""
        now = self._clock()
        async with self._sessions() as s, s.begin():
            ep = await self._owned(s, user_id, endpoint_id)
            original = await store.delivery(s, original_id, ep.id)
            if original is None:
                raise NotFound("No such delivery.")
            did = delivery_id()
            await store.insert_delivery(
                s,
                Delivery(
                    id=did,
                    webhook_id=original.webhook_id,
                    endpoint_id=ep.id,
                    user_id=user_id,
                    generation_id=original.generation_id,
                    event_id=original.event_id,
                    event_type=original.event_type,
                    occurred_at=original.occurred_at,
                    data=original.data,
                    status="pending" if ep.enabled else "disabled",
                    next_attempt_at=now,
                    redelivery_of=original.id,
                    created_at=now,
                    updated_at=now,
                ),
            )
        self._wake()
        return did
