"""The gateway's consumer, ``gateway-projection``: every generation event, folded into the
``generations`` row (the rules are :func:`vidgen_gateway.projection.apply_event`'s).

    event type                  handler
    every generation event      ProjectionHandlers.on_event
    (dead letter)               ProjectionHandlers.on_dead_letter

The inbox (``uow.claim``) drops an event already handled. A ``GenerationRequested`` this
gateway emitted itself is skipped: its row was written with the event, in one transaction.
Once a generation is terminal, its credits are settled in the same transaction (the
reservation released, the real cost booked as spent; see :mod:`vidgen_gateway.ledger`), so a
kill -9 at any point leaves either both or neither, and the inbox makes it happen once.

Each visible change bumps ``version`` and NOTIFYs the change channel with the generation id,
in the same transaction, so live streams in every gateway replica wake up after the commit.

An event the consumer gives up on (dead-lettered) must not leave its generation showing
progress for ever: :meth:`ProjectionHandlers.on_dead_letter` fails it with
``event_dead_lettered`` (stage ``gateway``) unless it is terminal already; that failure is
provisional (see :mod:`vidgen_gateway.projection`). No event is emitted: downstream
consumers hear how the generation ended from the services that ended it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import Handler
from vidgen_common.clock import utc_now
from vidgen_common.errors import PermanentError
from vidgen_common.events import (
    ALL_EVENTS,
    Envelope,
    EventData,
    GenerationRequested,
    TaskSubmitted,
)
from vidgen_common.uow import UnitOfWork
from vidgen_gateway import ledger
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.projection import apply_event, fail_dead_lettered, from_requested
from vidgen_gateway.store import lock_generation, notify_change, record_capacity, settle

log = logging.getLogger(__name__)

CONSUMER = "gateway-projection"


async def _settle(session: AsyncSession, gen: Generation) -> None:
    """Book what the ledger owes for ``gen`` now (nothing unless it is terminal)."""
    booked = ledger.settlement(gen)
    if booked is None:
        return
    periods = ledger.period_starts(gen.created_at)
    await settle(session, gen.user_id, periods, booked.release, booked.spend)
    ledger.apply_settlement(gen, booked)


class ProjectionHandlers:
    """The ``gateway-projection`` consumer's handlers."""

    def __init__(
        self, uow: Callable[[], UnitOfWork], channel: str, *, own_source: str | None = None
    ) -> None:
        """``own_source``: the CloudEvent source of this gateway's own events."""
        self._uow = uow
        self._channel = channel
        self.own_source = own_source
        self._capacity: dict[str, int] = {}  # model -> slots last recorded by this process

    def table(self) -> dict[type[EventData], Handler]:
        """Event type → handler: every generation event goes to :meth:`on_event`."""
        return dict.fromkeys(ALL_EVENTS, self.on_event)

    async def on_event(self, envelope: Envelope[EventData]) -> None:
        data = envelope.data
        if isinstance(data, GenerationRequested) and envelope.source == self.own_source:
            return  # written by this gateway with its row, in one transaction: nothing to do
        async with self._uow() as uow:
            if not await uow.claim(CONSUMER, envelope):
                log.info("duplicate %s %s ignored", envelope.type, envelope.id)
                return
            session = uow.session
            learnt = None  # a model's concurrency, recorded once per change (not per event)
            if isinstance(data, TaskSubmitted) and data.model_concurrency is not None:
                learnt = (data.model, data.model_concurrency)
                if self._capacity.get(data.model) == data.model_concurrency:
                    learnt = None
                else:
                    await record_capacity(session, *learnt, data.submitted_at)
            gen = await lock_generation(session, data.generation_id)
            if gen is None:
                if not isinstance(data, GenerationRequested):
                    raise PermanentError(f"no generation {data.generation_id} in this gateway")
                session.add(from_requested(data))
            elif apply_event(gen, data):
                await _settle(session, gen)
                gen.version += 1
                gen.updated_at = utc_now()
                session.add(gen)
            else:
                await uow.commit()  # the inbox row: handled, nothing visible changed
                self._learnt(learnt)
                return
            finished = gen is not None and Status(gen.status).terminal
            await notify_change(session, self._channel, data.generation_id, finished=finished)
            await uow.commit()
        self._learnt(learnt)

    def _learnt(self, learnt: tuple[str, int] | None) -> None:
        """After the commit: this process has recorded that model's concurrency."""
        if learnt is not None:
            self._capacity[learnt[0]] = learnt[1]

    async def on_dead_letter(self, envelope: Envelope[EventData], reason: str) -> None:
        """The consumer gave up on ``envelope``: fail its generation (see the module doc)."""
        gid = envelope.data.generation_id
        async with self._uow() as uow:
            session = uow.session
            gen = await lock_generation(session, gid)
            if gen is None:
                log.warning(
                    "dead letter %s %s: no generation %s here", envelope.type, envelope.id, gid
                )
                return
            now = utc_now()
            if not fail_dead_lettered(gen, envelope, reason, now):
                return
            await _settle(session, gen)
            gen.version += 1
            gen.updated_at = now
            session.add(gen)
            await notify_change(session, self._channel, gid, finished=True)
            await uow.commit()
        log.error("generation %s failed: %s was dead-lettered: %s", gid, envelope.type, reason)
