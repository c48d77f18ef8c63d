"""The notifier's event handlers: fold the event into the projection and write one delivery
per (event, matching endpoint), in the transaction of the event's inbox record.

=========================  ==================================================================
event                      effect
=========================  ==================================================================
GenerationRequested        the owner and project are known; a ``webhookUrl`` becomes the
                           generation's own endpoint; events held until now are fanned out
TaskSubmitted              ``startedAt``
TaskProgressed             ``generation.progressed`` to the endpoints that want it (not after
                           a terminal event)
VideoReady                 the status and cost (no webhook)
GenerationCompleted        ``generation.completed``
GenerationFailed           ``generation.failed``
GenerationCancelled        ``generation.cancelled``
=========================  ==================================================================

A delivery's ``webhook-id`` is derived from (event id, endpoint id): a redelivered event is
no second effect (the inbox), and even a second handling could not make a second message
(the unique ``webhook_id``). A webhook of a generation whose request was not seen yet (failed or
cancelled come without the user, and every payload names the project) is held until its
``GenerationRequested``; events of one generation come from several topics, so after an
outage of the notifier a completion may well be read before the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import Handler
from vidgen_common.clock import utc_now
from vidgen_common.events import Envelope, EventData, GenerationRequested
from vidgen_common.telemetry import current_trace_headers
from vidgen_common.uow import UnitOfWork
from vidgen_common.webhook_targets import DEFAULT_EVENTS, EVENT_TYPES
from vidgen_notifier import projection, store
from vidgen_notifier.models import Delivery, Endpoint, HeldEvent
from vidgen_notifier.signing import webhook_id

CONSUMER = "notifier"


def request_endpoint_id(generation_id: str) -> str:
    return "ep_req_" + uuid.uuid5(uuid.NAMESPACE_URL, f"vidgen:{generation_id}").hex


def wanted_events(events: list[str] | None) -> list[str]:
    """The known event types of a request's ``webhookEvents`` (the gateway checked them;
    an unknown one from a newer gateway is dropped, not a failure), else the default."""
    known = [e for e in (events or ()) if e in EVENT_TYPES]
    return known or list(DEFAULT_EVENTS)


def delivery_id() -> str:
    return "dlv_" + uuid.uuid4().hex


async def fan_out(
    session: AsyncSession,
    *,
    user_id: str,
    generation_id: str,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    data: dict[str, Any],
    now: datetime,
    trace: tuple[str | None, str | None],
) -> int:
    """One delivery per endpoint that wants ``event_type``; how many were written."""
    written = 0
    for ep in await store.endpoints_for(session, user_id, event_type, generation_id):
        row = Delivery(
            id=delivery_id(),
            webhook_id=webhook_id(event_id, ep.id),
            endpoint_id=ep.id,
            user_id=user_id,
            generation_id=generation_id,
            event_id=event_id,
            event_type=event_type,
            occurred_at=occurred_at,
            data=data,
            status="pending" if ep.enabled else "disabled",
            next_attempt_at=now,
            traceparent=trace[0],
            tracestate=trace[1],
            created_at=now,
            updated_at=now,
        )
        written += await store.insert_delivery(session, row)
    return written


class NotifierHandlers:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._wake = wake
        self._clock = clock

    def table(self) -> dict[type[EventData], Handler]:
        """Event type → handler (the table in the module doc): what the consumer reads."""
        return dict.fromkeys(projection.CONSUMED, self.on_event)

    async def on_event(self, envelope: Envelope[Any]) -> None:
        data: EventData = envelope.data
        gid = data.generation_id
        now = self._clock()
        trace = current_trace_headers()
        written = 0
        async with self._uow() as uow:
            s = uow.session
            if not await uow.claim_locked(CONSUMER, envelope, gid):
                return
            gen = await store.generation(s, gid)
            if gen is None:
                gen = projection.new_row(gid, now)
                s.add(gen)
            caused = projection.apply(gen, data, now)
            await s.flush()
            if isinstance(data, GenerationRequested):
                if data.webhook_url:
                    await store.insert_request_endpoint(
                        s,
                        Endpoint(
                            id=request_endpoint_id(gid),
                            user_id=data.user_id,
                            kind="request",
                            generation_id=gid,
                            url=data.webhook_url,
                            events=wanted_events(data.webhook_events),
                            created_at=now,
                            updated_at=now,
                        ),
                    )
                for held in await store.take_held(s, gid):
                    written += await fan_out(
                        s,
                        user_id=data.user_id,
                        generation_id=gid,
                        event_id=held.event_id,
                        event_type=held.event_type,
                        occurred_at=held.occurred_at,
                        data=projection.with_request(held.data, gen),
                        now=now,
                        trace=(held.traceparent, held.tracestate),
                    )
            if caused is not None:
                snapshot = projection.payload_data(gen)
                if gen.created_at is None or gen.user_id is None:  # request not handled yet
                    await store.hold(
                        s,
                        HeldEvent(
                            event_id=envelope.id,
                            generation_id=gid,
                            event_type=caused,
                            data=snapshot,
                            occurred_at=envelope.time,
                            traceparent=trace[0],
                            tracestate=trace[1],
                            created_at=now,
                        ),
                    )
                else:
                    written += await fan_out(
                        s,
                        user_id=gen.user_id,
                        generation_id=gid,
                        event_id=envelope.id,
                        event_type=caused,
                        occurred_at=envelope.time,
                        data=snapshot,
                        now=now,
                        trace=trace,
                    )
            await uow.commit()
        if written:
            self._wake()
