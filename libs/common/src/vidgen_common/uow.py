"""Unit of work: one transaction holding the inbox claim, the state change and the outbox.

    async with UnitOfWork(sessions, source="/vidgen/generator", topic_prefix=p) as uow:
        if not await uow.claim("generator", envelope):
            return                                 # handled before: no second effect
        ...change rows through uow.session...
        uow.emit(TaskSubmitted(...))               # written to the outbox, same transaction
        await uow.commit()

Leaving the block without :meth:`commit` rolls everything back. Emitted events carry the
current trace context, so the relay publishes them in the trace that caused them.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common import inbox, outbox
from vidgen_common.events import Envelope, EventData, topic_for
from vidgen_common.telemetry import current_trace_headers


class UnitOfWork:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, source: str, topic_prefix: str = ""
    ) -> None:
        self._sessions = sessions
        self._source = source
        self._prefix = topic_prefix
        self._pending: list[Envelope[EventData]] = []
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("UnitOfWork used outside 'async with'")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        await self._session.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if session.in_transaction():
                await session.rollback()
        finally:
            await session.close()
            self._session = None

    async def claim(self, consumer: str, envelope: Envelope[EventData]) -> bool:
        """Record ``envelope`` as handled by ``consumer``; False if it already was."""
        return await inbox.claim(self.session, consumer, envelope.id, envelope.type)

    async def claim_locked(
        self, consumer: str, envelope: Envelope[EventData], generation_id: str
    ) -> bool:
        """Lock ``generation_id`` for this transaction (as
        :func:`vidgen_common.db.lock_generation`) and :meth:`claim` ``envelope``, in one round
        trip: what a handler of a generation's event does first."""
        return await inbox.claim_locked(
            self.session, consumer, envelope.id, envelope.type, generation_id
        )

    async def seen(self, consumer: str, envelope: Envelope[EventData]) -> bool:
        """True if ``consumer`` already handled ``envelope`` (claims nothing)."""
        return await inbox.seen(self.session, consumer, envelope.id)

    def emit(self, data: EventData) -> Envelope[EventData]:
        """Queue ``data`` for the outbox; written at :meth:`commit`, in this transaction."""
        envelope = self._envelope(data)
        self._pending.append(envelope)
        return envelope

    def outbox_row(self, data: EventData) -> dict[str, Any]:
        """The outbox row of ``data`` (see :func:`vidgen_common.outbox.row`), for a statement
        of the caller's that writes it with its own rows in one round trip; unlike
        :meth:`emit`, nothing is written at :meth:`commit`."""
        envelope = self._envelope(data)
        return outbox.row(envelope, topic_for(envelope.data, self._prefix))

    def _envelope(self, data: EventData) -> Envelope[EventData]:
        traceparent, tracestate = current_trace_headers()
        return Envelope(
            data=data, source=self._source, traceparent=traceparent, tracestate=tracestate
        )

    async def commit(self) -> None:
        for envelope in self._pending:
            await outbox.add(self.session, envelope, topic_for(envelope.data, self._prefix))
        await self.session.commit()
        self._pending.clear()
