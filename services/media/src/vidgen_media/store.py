"""The media service's SQL: the ``transfers`` rows and the unit of work they are written in.

:class:`MediaUnitOfWork` is the one transaction a handler, the dead-letter hook and the sweep
work in (inbox, ``transfers`` and outbox commit together or not at all) and
:class:`Transfers` its ``transfers`` rows; :class:`SqlMediaUnitOfWork` / :class:`SqlTransfers`
are the real ones (the tests' fakes pass the same contract tests, ``tests/test_store_contract``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_common.events import Envelope, EventData
from vidgen_common.uow import UnitOfWork
from vidgen_media.models import TERMINAL, Transfer


class Transfers(Protocol):
    """The ``transfers`` rows, inside the unit of work's transaction."""

    async def get(self, generation_id: str) -> Transfer | None:
        """The row, locked until the transaction ends; a copy the caller may change."""

    async def now(self) -> datetime:
        """The database's clock (leases are judged by it, not by replicas' clocks)."""

    async def stalled(self, before: datetime, limit: int) -> list[Transfer]:
        """Unfinished rows with no live lease, unchanged since ``before`` (locked, skipping
        rows another transaction holds)."""

    async def leased_keys(self, keys: set[str]) -> set[str]:
        """Those of ``keys`` whose transfer a delivery holds a live lease on."""

    def save(self, transfer: Transfer) -> None:
        """Write the row (insert or update) at commit."""


class MediaUnitOfWork(Protocol):
    """One transaction: inbox, ``transfers`` and outbox commit together or not at all."""

    @property
    def transfers(self) -> Transfers: ...

    async def __aenter__(self) -> MediaUnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def handled(self, envelope: Envelope[Any]) -> bool:
        """Whether this consumer already handled ``envelope`` (nothing is recorded)."""

    async def claim(self, envelope: Envelope[Any]) -> bool:
        """Record ``envelope`` as handled; False if it already was."""

    def emit(self, data: EventData) -> None:
        """Queue an event for the outbox, written at commit."""

    async def commit(self) -> None: ...


class SqlTransfers:
    """:class:`Transfers` in PostgreSQL, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, generation_id: str) -> Transfer | None:
        return await self._session.get(
            Transfer, generation_id, with_for_update=True, populate_existing=True
        )

    async def now(self) -> datetime:
        value = (await run_sql(self._session, "SELECT now()")).scalar_one()
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    async def stalled(self, before: datetime, limit: int) -> list[Transfer]:
        query = (
            select(Transfer)
            .where(
                col(Transfer.state).not_in(TERMINAL),
                col(Transfer.updated_at) < before,
                or_(
                    col(Transfer.lease_expires_at).is_(None),
                    col(Transfer.lease_expires_at) < func.now(),
                ),
            )
            .order_by(col(Transfer.updated_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        return list((await self._session.exec(query)).all())

    async def leased_keys(self, keys: set[str]) -> set[str]:
        if not keys:
            return set()
        result = await run_sql(
            self._session,
            "SELECT video_key FROM transfers WHERE video_key = ANY(:k) "
            "AND lease_expires_at > now()",
            {"k": sorted(keys)},
        )
        return {str(k) for (k,) in result.all()}

    def save(self, transfer: Transfer) -> None:
        self._session.add(transfer)


class SqlMediaUnitOfWork:
    """:class:`MediaUnitOfWork` on the common :class:`~vidgen_common.uow.UnitOfWork` (its inbox
    rows recorded as ``consumer``)."""

    def __init__(self, make: Callable[[], UnitOfWork], consumer: str) -> None:
        self._make = make
        self._consumer = consumer
        self._uow: UnitOfWork | None = None
        self.transfers: SqlTransfers

    @property
    def _inner(self) -> UnitOfWork:
        if self._uow is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._uow

    async def __aenter__(self) -> SqlMediaUnitOfWork:
        self._uow = await self._make().__aenter__()
        self.transfers = SqlTransfers(self._uow.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            self._uow = None

    async def handled(self, envelope: Envelope[Any]) -> bool:
        return await self._inner.seen(self._consumer, envelope)

    async def claim(self, envelope: Envelope[Any]) -> bool:
        return await self._inner.claim(self._consumer, envelope)

    def emit(self, data: EventData) -> None:
        self._inner.emit(data)

    async def commit(self) -> None:
        await self._inner.commit()
