"""The durable work loop: claim due rows, work on each in its own task, sleep until the next.

The generator's submitter and the poller's tracker are this loop over their own table. The
durability lives in the table, not here: ``claim`` takes due rows (``FOR UPDATE SKIP
LOCKED``, so replicas never take one row twice) and leases them under a fresh token in one
transaction; a replica that dies leaves leased rows that come due again when the lease runs
out. This module decides when to claim and how much, and runs the work.

Each pass (:meth:`WorkLoop.run` until ``stop``):

1. ``before_claim`` (sweeps: expired claims, abandoned work);
2. **claim** up to the free slots (``concurrency`` minus the work in flight); nothing while
   paused (:meth:`WorkLoop.pause_until`, e.g. a Runway ``Retry-After``) or stopping;
3. ``after_claim`` (reports), then each claimed ``(row, token)`` is handed to ``handle`` in
   its own task, in the trace of the request that caused the row (``span_name``) and with
   the generation id in the logs' context. A failure is logged, never raised: the row's
   lease (or the service's sweep) brings it back. A finished task wakes the loop;
4. ``after_pass`` (housekeeping that :meth:`WorkLoop.run_once` does not do);
5. sleep until the next row is due (``next_due_at``, at least ``min_sleep_s``), the pause
   ends, :attr:`WorkLoop.wake` is set (a handler stored new work) or ``idle_s``; with
   ``idle_when_full``, a loop with no free slot sleeps ``idle_s`` (a finishing task wakes
   it). A pass that raises is logged and the loop sleeps ``idle_s``.

**Shutdown**: once ``stop`` is set (or :meth:`WorkLoop.drain` is called) nothing more is
claimed, and the work in flight is awaited: all of it (``drain_timeout_s=None``), or for at
most ``drain_timeout_s``; then ``after_drain`` runs. Cancelling a caller does not cancel the
drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.trace import Tracer

from vidgen_common.aio import wait_any
from vidgen_common.clock import Clock, utc_now
from vidgen_common.logs import generation_id_var
from vidgen_common.telemetry import context_from

log = logging.getLogger(__name__)


class Row(Protocol):
    """What the loop reads of a claimed row: whose it is and the trace it belongs to."""

    @property
    def generation_id(self) -> str: ...

    @property
    def traceparent(self) -> str | None: ...

    @property
    def tracestate(self) -> str | None: ...


R = TypeVar("R", bound=Row)

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class WorkSpec(Generic[R]):
    """What a service plugs into the loop.

    ``claim(free)`` claims at most ``free`` due rows and returns them with their claim
    tokens; ``handle(row, token)`` works on one; ``next_due_at()`` is when the next row is
    due (``None``: nothing is scheduled). ``key`` identifies a row's work in flight,
    ``describe`` names it in logs, ``span_attributes`` annotate its span. The hooks are
    described in the module doc; ``after_drain`` runs once the drain has waited, and
    ``draining_log`` (a format taking the count) is logged when a drain has work to wait for.
    """

    name: str
    claim: Callable[[int], Awaitable[Sequence[tuple[R, str]]]]
    handle: Callable[[R, str], Awaitable[None]]
    next_due_at: Callable[[], Awaitable[datetime | None]]
    key: Callable[[R], Hashable]
    describe: Callable[[R], str]
    span_name: str
    span_attributes: Callable[[R], dict[str, Any]]
    before_claim: Hook | None = None
    after_claim: Hook | None = None
    after_pass: Hook | None = None
    after_drain: Hook | None = None
    draining_log: str = "stopping: waiting for %d in flight"


class Pace:
    """When a work loop may claim: stopped (shutdown began) or paused until a moment (a
    ``Retry-After``). Its own object, so that what a handler does (a create answered 429)
    can pause the loop that runs it without the handler holding the loop."""

    def __init__(self) -> None:
        self._paused_until: datetime | None = None
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once shutdown began: nothing more is claimed."""
        return self._stopping

    @property
    def paused_until(self) -> datetime | None:
        return self._paused_until

    def stop_claiming(self) -> None:
        self._stopping = True

    def pause_until(self, until: datetime) -> None:
        """Claim nothing before ``until`` (a later pause extends it, an earlier one does not)."""
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until

    def paused(self, now: datetime) -> bool:
        """True while a pause holds at ``now``."""
        return self._paused_until is not None and now < self._paused_until


class WorkLoop(Generic[R]):
    def __init__(
        self,
        spec: WorkSpec[R],
        *,
        concurrency: int,
        idle_s: float,
        min_sleep_s: float,
        idle_when_full: bool = True,
        drain_timeout_s: float | None = None,
        tracer: Tracer | None = None,
        clock: Clock = utc_now,
        pace: Pace | None = None,
    ) -> None:
        self._spec = spec
        self._concurrency = concurrency
        self._idle_s = idle_s
        self._min_sleep_s = min_sleep_s
        self._idle_when_full = idle_when_full
        self._drain_timeout_s = drain_timeout_s
        self._tracer = tracer
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[Hashable] = set()
        self.pace = pace or Pace()
        self._drained: asyncio.Future[None] | None = None
        self.wake = asyncio.Event()
        """Set it to start a pass now (new work was stored, or a slot came free)."""

    # -- state ---------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once shutdown began: nothing more is claimed."""
        return self.pace.stopping

    @property
    def in_flight(self) -> frozenset[Hashable]:
        """The keys of the rows being worked on now."""
        return frozenset(self._in_flight)

    @property
    def free(self) -> int:
        """Slots free for new work."""
        return self._concurrency - len(self._tasks)

    def stop_claiming(self) -> None:
        """Claim nothing from now on (shutdown began)."""
        self.pace.stop_claiming()

    def pause_until(self, until: datetime) -> None:
        """Claim nothing before ``until`` (a later pause extends it, an earlier one does not)."""
        self.pace.pause_until(until)

    def paused(self, now: datetime) -> bool:
        """True while a pause holds at ``now``."""
        return self.pace.paused(now)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop``; then drain."""
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    await self.run_once()
                    if self._spec.after_pass is not None:
                        await self._spec.after_pass()
                    delay = await self._sleep_time()
                except Exception:
                    log.exception("%s pass failed", self._spec.name)
                    delay = self._idle_s
                await wait_any((self.wake, stop), delay)
        finally:
            await asyncio.shield(self.drain())

    async def run_once(self) -> int:
        """One pass without its sleep: claim and start working; returns how many were claimed."""
        spec = self._spec
        if spec.before_claim is not None:
            await spec.before_claim()
        claimed = await self.claim()
        if spec.after_claim is not None:
            await spec.after_claim()
        for row, token in claimed:
            self._start(row, token)
        return len(claimed)

    async def claim(self) -> Sequence[tuple[R, str]]:
        """Claim due rows for the free slots (none while stopping or paused); the caller
        works on them."""
        free = self.free
        if self.pace.stopping or free <= 0 or self.paused(self._clock()):
            return []
        return await self._spec.claim(free)

    async def idle(self) -> None:
        """Wait for the work started so far, and any started meanwhile."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self) -> None:
        """Stop claiming and wait for the work in flight (see the module doc). Idempotent;
        cancelling a caller does not cancel the drain."""
        self.stop_claiming()
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drained)

    async def _drain(self) -> None:
        if self._tasks:
            log.info(self._spec.draining_log, len(self._tasks))
        if self._drain_timeout_s is None:
            await self.idle()
        elif self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._drain_timeout_s)
        if self._spec.after_drain is not None:
            await self._spec.after_drain()

    async def _sleep_time(self) -> float:
        idle = self._idle_s
        if self._idle_when_full and self.free <= 0:
            return idle  # a finishing task wakes the loop
        now = self._clock()
        until = self.pace.paused_until
        if until is not None and until > now:
            return min(idle, (until - now).total_seconds())
        due_at = await self._spec.next_due_at()
        if due_at is None:
            return idle
        return min(idle, max(self._min_sleep_s, (due_at - now).total_seconds()))

    # -- one piece of work ---------------------------------------------------------------------

    def _start(self, row: R, token: str) -> None:
        key = self._spec.key(row)
        self._in_flight.add(key)
        task = asyncio.create_task(self._work(row, token), name=f"{self._spec.name}-{key}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, key))

    def _done(self, task: asyncio.Task[None], key: Hashable) -> None:
        self._tasks.discard(task)
        self._in_flight.discard(key)
        self.wake.set()

    async def _work(self, row: R, token: str) -> None:
        generation_id_var.set(row.generation_id)  # this task's own context: for the logs
        try:
            with self._span(row):
                await self._spec.handle(row, token)
        except Exception:
            log.exception("%s failed", self._spec.describe(row))

    @contextlib.contextmanager
    def _span(self, row: R) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(
            self._spec.span_name,
            context=context_from(row.traceparent, row.tracestate),
            attributes=self._spec.span_attributes(row),
        ):
            yield
