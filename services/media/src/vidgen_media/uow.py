"""The real :class:`~vidgen_media.ports.MediaUnitOfWork`: the common UnitOfWork + ``transfers``."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.events import Envelope, EventData
from vidgen_common.uow import UnitOfWork
from vidgen_media.models import Transfer

CONSUMER = "media"


class SqlTransfers:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, generation_id: str) -> Transfer | None:
        return await self._session.get(
            Transfer, generation_id, with_for_update=True, populate_existing=True
        )

    def save(self, transfer: Transfer) -> None:
        self._session.add(transfer)


class SqlMediaUnitOfWork:
    def __init__(self, make: Callable[[], UnitOfWork], consumer: str = CONSUMER) -> None:
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
