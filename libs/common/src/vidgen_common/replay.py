"""The active relay's watch over the broker: notice that it lost data, publish again.

A broker that restarts with empty storage (or is replaced, or truncates a log) loses records
it had acknowledged; the outbox rows behind them are marked published and nothing would ever
send them again, so their generations would stop. :class:`BrokerGuard` runs inside the active
relay, between its publishing passes:

- every ``KAFKA_CHECK_INTERVAL_S`` it reads the cluster id, which of the service's topics
  exist and their end offsets, and compares them with :class:`~vidgen_common.bus.loss.BrokerMarks`
  (what the broker was seen or acknowledged to hold; kept in the ``outbox_relay`` row, so a
  restarted process still knows); each publish's acknowledgements are compared too;
- all well: the marks rise and ``verified_at`` records the database time when the broker was
  last known to hold everything published before it;
- data lost: the missing topics are created, the marks start again from what the broker holds
  now, and every retained row published since ``verified_at`` minus ``VIDGEN_OUTBOX_REPLAY_S``
  is marked pending again, so the relay publishes it again in id order (per-key order holds;
  the consumers' inboxes drop what they had already handled).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

import asyncpg

from vidgen_common.bus.admin import BrokerAdmin
from vidgen_common.bus.loss import Ack, BrokerMarks, BrokerView, ack_losses, losses
from vidgen_common.errors import TransientError
from vidgen_common.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 5000  # rows queued again per statement


class BrokerUnreachable(TransientError):
    """A check of the broker failed (it is away, or slow): tried again later."""


async def _ask(call: Awaitable[T]) -> T:
    try:
        return await call
    except Exception as exc:
        raise BrokerUnreachable(f"the broker did not answer a check: {exc!r}") from exc


class BrokerLostData(Exception):
    """Acknowledgements show that the broker lost records it had held."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


class BrokerGuard:
    def __init__(
        self,
        admin: BrokerAdmin,
        topics: Iterable[str],
        *,
        interval_s: float,
        replay_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._admin = admin
        self._topics = set(topics)
        self._interval_s = interval_s
        self._replay_s = replay_s
        self._metrics = metrics
        self._marks = BrokerMarks()
        self._loaded = False
        self._next_check = 0.0
        self.republished_total = 0

    @property
    def marks(self) -> BrokerMarks:
        return self._marks

    def on_lead(self) -> None:
        """This relay just took the lease: read the marks the last holder stored, check now."""
        self._loaded = False
        self._next_check = 0.0

    def check_soon(self) -> None:
        """Check at the next opportunity (a publish found a topic missing, say)."""
        self._next_check = 0.0

    def acknowledged(self, acks: Sequence[Ack]) -> None:
        """Take note of a publish's acknowledgements; :class:`BrokerLostData` if they show a
        log that started again (the rows must not be marked published)."""
        reasons = ack_losses(self._marks, acks)
        if reasons:
            raise BrokerLostData(reasons)
        self._marks = self._marks.acknowledged(acks)

    async def check_if_due(
        self, conn: asyncpg.Connection, *, beat: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        if time.monotonic() >= self._next_check:
            await self.check(conn, beat=beat)

    async def check(
        self, conn: asyncpg.Connection, *, beat: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Compare the broker with the marks; recover if it lost data (see the module doc)."""
        self._next_check = time.monotonic() + self._interval_s
        await self._load(conn)
        started: datetime = await conn.fetchval("SELECT now()")
        view = await _ask(self._admin.view(self._watched()))
        verdict = losses(self._marks, view)
        reasons = list(verdict.reasons)
        for topic, partition, offset in verdict.suspects:
            if not await _ask(self._admin.holds(topic, partition, offset)):
                reasons.append(f"{topic}[{partition}] no longer holds offset {offset} it took")
        if reasons:
            await self.recover(conn, reasons, beat=beat)
            return
        if view.missing:  # never held anything (new, or empty when lost): just create them
            created = await _ask(self._admin.create_missing(view.missing))
            if created:
                log.info("created missing topics %s", created)
        self._marks = self._marks.observe(view)
        await self._save(conn, verified_at=started)

    async def recover(
        self,
        conn: asyncpg.Connection,
        reasons: Sequence[str],
        *,
        beat: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Recreate what is missing and queue every row that may be lost; returns their count.

        Rows are queued in chunks, ``beat`` (the relay's heartbeat) called between them; a
        relay that dies halfway leaves the marks unchanged, so the next holder finds the same
        loss and finishes the job."""
        self._next_check = time.monotonic() + self._interval_s
        await self._load(conn)
        started: datetime = await conn.fetchval("SELECT now()")
        verified = await conn.fetchval("SELECT verified_at FROM outbox_relay WHERE id = 1")
        created = await _ask(self._admin.create_missing(self._watched()))
        view: BrokerView = await _ask(self._admin.view(self._watched()))
        count = 0
        while True:
            status = await conn.execute(
                "UPDATE outbox SET published_at = NULL WHERE id IN (SELECT id FROM outbox "
                "WHERE published_at >= coalesce($1::timestamptz - make_interval(secs => $2), "
                "'-infinity') ORDER BY id LIMIT $3)",
                verified,  # NULL: never known to hold anything, so all that is retained
                self._replay_s,
                _CHUNK,
            )
            done = int(status.split()[-1])
            count += done
            if done < _CHUNK:
                break
            if beat is not None:
                await beat()
        self._marks = BrokerMarks.fresh(view)
        await self._save(conn, verified_at=started)
        self.republished_total += count
        if self._metrics is not None:
            self._metrics.broker_data_loss.labels("relay").inc()
            self._metrics.outbox_republished.inc(count)
        log.error(
            "the broker lost data it had acknowledged (%s); recreated topics %s; publishing "
            "again %d outbox rows published since %s minus %.0f s",
            "; ".join(reasons),
            created or "none",
            count,
            verified.isoformat() if verified is not None else "ever",
            self._replay_s,
        )
        return count

    def _watched(self) -> set[str]:
        return self._topics | set(self._marks.ends)

    async def _load(self, conn: asyncpg.Connection) -> None:
        if self._loaded:
            return
        stored = await conn.fetchval("SELECT broker FROM outbox_relay WHERE id = 1")
        if isinstance(stored, str):
            stored = json.loads(stored)
        self._marks = BrokerMarks.from_json(stored)  # the last holder's, authoritative
        self._loaded = True

    async def _save(self, conn: asyncpg.Connection, *, verified_at: datetime) -> None:
        await conn.execute(
            "UPDATE outbox_relay SET broker = $1::jsonb, verified_at = $2 "
            "WHERE id = 1 AND backend_pid = pg_backend_pid()",
            json.dumps(self._marks.to_json()),
            verified_at,
        )
