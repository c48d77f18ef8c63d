"""The ports the handler depends on; real adapters in transfer/probe/uow, fakes in tests."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from vidgen_common.events import Envelope, EventData
from vidgen_media.models import Transfer
from vidgen_media.probe import Probe
from vidgen_media.transfer import TransferResult


class VideoFetcher(Protocol):
    async def fetch(self, url: str, key: str) -> TransferResult:
        """Stream ``url`` into the object at ``key``; no object is left when this raises.

        Raises :class:`~vidgen_media.errors.MediaError` subclasses (``UrlExpired``,
        ``DownloadFailed``, ``VideoTooLarge``, ``InvalidVideo``, ``StorageFailed``).
        """


class VideoProber(Protocol):
    async def probe(self, key: str) -> Probe:
        """Check the stored object is a playable video and make its poster JPEG.

        Raises ``InvalidVideo`` (not a video) or ``StorageFailed`` (could not read it).
        """


class Transfers(Protocol):
    """The ``transfers`` rows, inside the unit of work's transaction."""

    async def get(self, generation_id: str) -> Transfer | None:
        """The row, locked until the transaction ends; a copy the caller may change."""

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
