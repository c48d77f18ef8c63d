"""The outbox relay: publishes a schema's pending outbox rows to Kafka, then marks them.

Rows go out in id order (so in order per key). A crash between publishing and marking
re-publishes those rows on the next pass: delivery is at-least-once and consumers dedupe by
event id (the inbox). It wakes on NOTIFY and also polls.

One relay per schema publishes at a time (:mod:`vidgen_common.lease`: an advisory lock plus a
heartbeat a standby takes over when it goes stale); other replicas stand by. Every database
call is bounded (``command_timeout``; server-side TCP keepalives end the session of a relay
whose host vanished), so a connection that goes silent is dropped and opened again within
seconds instead of hanging the relay. A publish is bounded too, and while the broker fails
the relay keeps its session and lease and tries again.

Every relay process, standby or not, measures the outbox lag on its own connection
(:attr:`OutboxRelay.lag_seconds`), so the metric stays live exactly when the active relay is
stuck. With a :class:`~vidgen_common.replay.BrokerGuard` the active relay also notices a
broker that lost data and publishes the lost rows again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence

import asyncpg

from vidgen_common.aio import sleep_unless, wait_any
from vidgen_common.db import check_schema
from vidgen_common.errors import TransientError
from vidgen_common.lease import RelayLease, application_name
from vidgen_common.outbox import Ack, Record, RecordSink, channel_for
from vidgen_common.replay import BrokerGuard, BrokerLostData, BrokerUnreachable

log = logging.getLogger(__name__)

_LOG_EVERY = 10


class PublishError(TransientError):
    """The sink (the broker) did not acknowledge a batch; its rows stay pending."""


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        schema: str,
        sink: RecordSink,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        retention_s: float = 86_400.0,
        inbox_retention_s: float = 7 * 86_400.0,
        purge_batch: int = 1000,
        command_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        lease_s: float = 10.0,
        lag_interval_s: float = 1.0,
        publish_timeout_s: float = 30.0,
        guard: BrokerGuard | None = None,
    ) -> None:
        self._dsn = dsn
        self._schema = check_schema(schema)
        self._sink = sink
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retention_s = retention_s
        self._inbox_retention_s = inbox_retention_s
        self._purge_batch = purge_batch
        self._command_timeout_s = command_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._beat_every_s = min(1.0, lease_s / 5)
        self._lag_interval_s = lag_interval_s
        self._guard = guard
        self.holder = f"{uuid.uuid4().hex[:12]}"
        self._lease = RelayLease(schema, self.holder, lease_s=lease_s)
        self._wake = asyncio.Event()
        self._last_beat = 0.0
        self._trouble: tuple[float, str] | None = None
        self._failures = 0
        self._lag = (0.0, time.monotonic(), True)  # (value, measured at, measured then)
        self.published_total = 0
        self.leading = False

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest pending row at the last measurement; while the database cannot
        be read, that plus the time since (what is pending may only have grown older)."""
        value, at, fresh = self._lag
        return value if fresh else value + (time.monotonic() - at)

    def health(self) -> str:
        """ "ok" (publishing or standing by) or what has kept the relay from working."""
        if self._trouble is None:
            return "ok"
        since, what = self._trouble
        failing = time.monotonic() - since
        if failing < 1.0:
            return "ok"
        doing = "cannot publish" if self.leading else "cannot take part"
        return f"error: {doing} for {failing:.0f} s: {what}"

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, re-connecting after database errors."""
        lag = asyncio.create_task(self._watch_lag(stop), name="outbox-lag")
        try:
            while not stop.is_set():
                try:
                    await self._lead(stop)
                except Exception as exc:  # the database went away, or the lease was lost
                    self._failed(exc, "outbox relay session failed, connecting again")
                    await sleep_unless(stop, self._poll_interval_s)
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

    async def _connect(self, purpose: str = "") -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_s,
            command_timeout=self._command_timeout_s,
            server_settings={
                "search_path": self._schema,
                "application_name": application_name(self._schema) + purpose,
                # the server ends the session of a relay whose host vanished within ~25 s,
                # which releases its lock even when nobody takes it over
                "tcp_keepalives_idle": "10",
                "tcp_keepalives_interval": "5",
                "tcp_keepalives_count": "3",
            },
        )
        return conn

    @staticmethod
    async def _close(conn: asyncpg.Connection) -> None:
        try:
            await asyncio.wait_for(conn.close(), 2)
        except Exception:
            conn.terminate()

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            while not await self._lease.try_acquire(conn):
                self._ok()
                await self._lease.take_over_if_stale(conn)
                if await sleep_unless(stop, self._poll_interval_s):
                    return
            self.leading = True
            self._last_beat = time.monotonic()
            if self._guard is not None:
                self._guard.on_lead()
            await conn.add_listener(channel_for(self._schema), self._on_notify)
            log.info("outbox relay for %s is active", self._schema)
            last_purge = 0.0
            while not stop.is_set():
                self._wake.clear()
                await self._beat(conn)
                await self._drain(conn)
                if time.monotonic() - last_purge > 60:
                    # a full batch: more is left, the next pass deletes the next batch
                    if await self.purge_batch(conn) < self._purge_batch:
                        last_purge = time.monotonic()
                    else:
                        self._wake.set()
                await wait_any((self._wake, stop), self._poll_interval_s)
        finally:
            self.leading = False
            await self._close(conn)

    async def _beat(self, conn: asyncpg.Connection, *, force: bool = False) -> None:
        if force or time.monotonic() - self._last_beat >= self._beat_every_s:
            await self._lease.beat(conn)
            self._last_beat = time.monotonic()

    async def _drain(self, conn: asyncpg.Connection) -> None:
        """Check the broker when due, then publish until nothing is pending. Broker trouble is
        recorded (the caller tries again); database errors propagate (the session is dropped)."""

        async def beat() -> None:
            await self._beat(conn, force=True)

        try:
            if self._guard is not None:
                await self._guard.check_if_due(conn, beat=beat)
            while await self.publish_pending(conn) == self._batch_size:
                await self._beat(conn)
        except BrokerLostData as exc:
            if self._guard is not None:
                await self._guard.recover(conn, exc.reasons, beat=beat)
            return
        except PublishError as exc:
            if self._guard is not None:
                self._guard.check_soon()  # a missing topic, say: find out whether data is lost
            self._failed(exc.__cause__ or exc, "publishing outbox rows failed, trying again")
            return
        except BrokerUnreachable as exc:
            self._failed(exc.__cause__ or exc, "checking the broker failed, trying again")
            return
        self._ok()

    async def publish_pending(self, conn: asyncpg.Connection | None = None) -> int:
        """One pass: publish up to ``batch_size`` pending rows in id order, mark them.

        Raises :class:`PublishError` when the sink failed (the rows stay pending) and
        :class:`~vidgen_common.replay.BrokerLostData` when the acknowledgements show a broker
        that lost data (the rows stay pending too)."""
        own = conn is None
        conn = conn or await self._connect()
        try:
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox "
                "WHERE published_at IS NULL ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                return 0
            records = [
                Record(
                    topic=r["topic"],
                    key=bytes(r["key"]),
                    value=bytes(r["value"]),
                    headers=[(k, v.encode()) for k, v in json.loads(r["headers"])],
                )
                for r in rows
            ]
            acks = await self._send(records, conn)
            if self._guard is not None:
                self._guard.acknowledged(acks)
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
            self.published_total += len(rows)
            return len(rows)
        finally:
            if own:
                await self._close(conn)

    async def _send(
        self, records: Sequence[Record], conn: asyncpg.Connection | None = None
    ) -> Sequence[Ack]:
        """Publish, bounded; the heartbeat goes on meanwhile (a slow broker is no hung relay:
        a paused or dead process stops beating, and a standby takes over)."""
        done = asyncio.Event()
        beating = asyncio.create_task(self._beat_until(done, conn)) if self.leading else None
        try:
            return await asyncio.wait_for(self._sink.publish(records), self._publish_timeout_s)
        except Exception as exc:
            raise PublishError(f"publishing {len(records)} records failed: {exc!r}") from exc
        finally:
            done.set()
            if beating is not None:
                await beating  # lets a beat in progress finish: the connection stays usable

    async def _beat_until(self, done: asyncio.Event, conn: asyncpg.Connection | None) -> None:
        while conn is not None and not await sleep_unless(done, self._beat_every_s):
            await self._beat(conn)

    async def purge_batch(self, conn: asyncpg.Connection | None = None) -> int:
        """Delete at most ``purge_batch`` outbox rows published longer ago than the retention
        and as many inbox rows handled longer ago than the inbox retention; the rows deleted.

        Small batches (an index range, oldest first, then the rows by their ctid: an IN
        (subquery) let the planner choose a hash join over the whole table) keep each
        statement short: the relay
        runs one batch between two publishing passes until nothing is left, so a backlog of a
        day's rows never holds the loop (nor exceeds the command timeout)."""
        own = conn is None
        conn = conn or await self._connect()
        try:
            outbox = await conn.execute(
                "DELETE FROM outbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM outbox "
                "WHERE published_at < now() - make_interval(secs => $1) "
                "ORDER BY published_at LIMIT $2))",
                self._retention_s,
                self._purge_batch,
            )
            inbox = await conn.execute(
                "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox "
                "WHERE handled_at < now() - make_interval(secs => $1) "
                "ORDER BY handled_at LIMIT $2))",
                self._inbox_retention_s,
                self._purge_batch,
            )
        finally:
            if own:
                await self._close(conn)
        return int(outbox.split()[-1]) + int(inbox.split()[-1])

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def _ok(self) -> None:
        self._trouble = None
        self._failures = 0

    def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        if self._trouble is None:
            self._trouble = (time.monotonic(), f"{exc.__class__.__name__}: {exc}"[:300])
        else:
            self._trouble = (self._trouble[0], f"{exc.__class__.__name__}: {exc}"[:300])
        if self._failures <= 3 or self._failures % _LOG_EVERY == 0:
            log.warning("%s (%d in a row): %r", what, self._failures, exc)

    async def _watch_lag(self, stop: asyncio.Event) -> None:
        """Measure the lag on a connection of its own, whatever the publishing side does."""
        conn: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await self._connect("/lag")
                    age = await conn.fetchval(
                        "SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox "
                        "WHERE published_at IS NULL ORDER BY id LIMIT 1"
                    )
                    self._lag = (max(0.0, float(age or 0.0)), time.monotonic(), True)
                except Exception as exc:
                    value, at, _ = self._lag
                    self._lag = (value, at, False)
                    log.debug("outbox lag not measured: %r", exc)
                    if conn is not None:
                        await self._close(conn)
                        conn = None
                if await sleep_unless(stop, self._lag_interval_s):
                    return
        finally:
            if conn is not None:
                await self._close(conn)
