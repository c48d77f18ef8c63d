"""This replica's heartbeat: a row of ``generator_instances`` refreshed by the database's clock.

An intent records the replica that sends its create (``owner``). Another replica takes the
intent for abandoned only when its owner has been silent for ``instance_dead_after_s`` by the
database's clock, so no two replicas' clocks need to agree, and a live create, however slow its
recording, is never given up because it is old. The heartbeat keeps running while the process
drains at shutdown, and the row is removed once the last create in flight is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable

from vidgen_common.aio import sleep_unless
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store

log = logging.getLogger(__name__)


def new_instance_id() -> str:
    """Host (the pod's name under Kubernetes), pid and a random part: unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Liveness:
    def __init__(
        self, uow: Callable[[], UnitOfWork], interval_s: float, instance_id: str | None = None
    ) -> None:
        self._uow = uow
        self._interval_s = interval_s
        self.instance_id = instance_id or new_instance_id()

    async def beat(self) -> None:
        async with self._uow() as uow:
            await store.heartbeat(uow.session, self.instance_id)
            await uow.commit()

    async def run(self, until: asyncio.Event) -> None:
        """Beat every ``interval_s`` until ``until`` is set (failures are logged, not fatal:
        a replica that cannot reach the database cannot record anything either)."""
        failures = 0
        while True:
            try:
                await self.beat()
                if failures:
                    log.info("heartbeat of %s back after %d failures", self.instance_id, failures)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures <= 3 or failures % 20 == 0:
                    log.warning("heartbeat of %s failed (%d): %r", self.instance_id, failures, exc)
            if await sleep_unless(until, self._interval_s):
                return

    async def retire(self) -> None:
        """Remove this replica's row (it owns no create any more); best effort."""
        try:
            async with self._uow() as uow:
                await store.retire(uow.session, self.instance_id)
                await uow.commit()
        except Exception as exc:  # the row then simply goes silent: same effect, later
            log.warning("could not retire %s: %r", self.instance_id, exc)
