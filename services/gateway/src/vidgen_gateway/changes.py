"""Change notifications for live streams: PostgreSQL LISTEN, fanned out in-process.

The projection NOTIFYs ``channel_for(schema)`` with a generation id after each change. One
:class:`PgChangeFeed` per process holds a dedicated asyncpg connection that LISTENs on it and
wakes every in-process subscriber of that id, so a stream served by any replica hears about
changes made by any other. After a reconnect every subscriber is woken (it re-reads), so a
notification lost while disconnected costs at most one extra read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import asyncpg

from vidgen_common.db import check_schema

log = logging.getLogger(__name__)


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a gateway schema (PostgreSQL identifiers stop at 63 bytes)."""
    return f"vidgen_gen_{check_schema(schema)}"[:63]


class Subscription:
    """Wakes when the subscribed generation may have changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, within: float) -> bool:
        """True when woken within ``within`` seconds (then re-armed), False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), within)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class ChangeFeed(Protocol):
    """Where live streams learn that a generation changed."""

    @property
    def closed(self) -> bool:
        """True once the process is stopping: streams end (clients resume elsewhere)."""
        ...

    def subscribe(self, generation_id: str) -> contextlib.AbstractContextManager[Subscription]:
        """A subscription for ``generation_id``, ended when the context exits."""
        ...


class LocalChangeFeed:
    """In-process fan-out; :class:`PgChangeFeed` feeds it from LISTEN (tests may call
    :meth:`publish` directly)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End every stream (they see :attr:`closed` when woken)."""
        self._closed = True
        self.wake_all()

    @contextlib.contextmanager
    def subscribe(self, generation_id: str) -> Iterator[Subscription]:
        sub = Subscription()
        self._subscribers.setdefault(generation_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subscribers.get(generation_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[generation_id]

    def publish(self, generation_id: str) -> None:
        for sub in list(self._subscribers.get(generation_id, ())):
            sub.wake()

    def wake_all(self) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.wake()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


class PgChangeFeed(LocalChangeFeed):
    """:class:`LocalChangeFeed` fed by LISTEN on a dedicated connection (run :meth:`run`)."""

    def __init__(self, dsn: str, channel: str, *, retry_s: float = 1.0) -> None:
        super().__init__()
        self._dsn = dsn
        self._channel = channel
        self._retry_s = retry_s
        self.listening = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """LISTEN until ``stop`` is set, reconnecting after connection loss; then end every
        stream, so the HTTP server can finish its shutdown."""
        try:
            while not stop.is_set():
                try:
                    await self._listen(stop)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("change feed connection lost, reconnecting: %r", exc)
                self.listening.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry_s)
        finally:
            self.close()

    async def _listen(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(self._channel, self._on_notify)
            self.listening.set()
            self.wake_all()  # whatever changed while not listening is re-read
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.publish(payload)
