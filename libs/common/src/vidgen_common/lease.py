"""Which relay of a schema publishes: an advisory lock, and a heartbeat that can be taken over.

The session-scoped advisory lock makes one relay the holder; the others stand by. The lock
alone cannot tell a holder that stopped moving (a process paused or hung, a node cut off, a
connection gone silent) from one that works: its session stays open and keeps the lock. So the
holder beats a heartbeat in the ``outbox_relay`` row (its backend pid and ``heartbeat_at``);
a standby that finds the heartbeat older than the lease terminates that backend
(``pg_terminate_backend``: allowed to the same role), which releases the lock, and takes over.
A holder that comes back finds its session gone and stands by. Ages are measured with the
database's clock, so the replicas' clocks need not agree.
"""

from __future__ import annotations

import logging

import asyncpg

from vidgen_common.db import check_schema

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The heartbeat row names another backend: this session no longer holds the lease."""


def application_name(schema: str) -> str:
    """The ``application_name`` of a relay's session (how a standby recognises it)."""
    return f"vidgen-relay:{check_schema(schema)}"[:63]


class RelayLease:
    def __init__(self, schema: str, holder: str, *, lease_s: float) -> None:
        self._key = f"vidgen-outbox:{check_schema(schema)}"
        self._app = application_name(schema)
        self._holder = holder
        self._lease_s = lease_s

    async def try_acquire(self, conn: asyncpg.Connection) -> bool:
        """Take the lock if it is free, and the heartbeat row with it."""
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self._key):
            return False
        await conn.execute(
            "INSERT INTO outbox_relay (id, holder, backend_pid, heartbeat_at) "
            "VALUES (1, $1, pg_backend_pid(), now()) ON CONFLICT (id) DO UPDATE "
            "SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid, "
            "heartbeat_at = EXCLUDED.heartbeat_at",
            self._holder,
        )
        return True

    async def beat(self, conn: asyncpg.Connection) -> None:
        """Renew the heartbeat; :class:`LeaseLost` if the row names another session."""
        status = await conn.execute(
            "UPDATE outbox_relay SET heartbeat_at = now() "
            "WHERE id = 1 AND backend_pid = pg_backend_pid()"
        )
        if status != "UPDATE 1":
            raise LeaseLost(f"the relay lease of {self._key} is held by another session")

    async def take_over_if_stale(self, conn: asyncpg.Connection) -> int | None:
        """Terminate the holder's session if its heartbeat is older than the lease; returns
        the terminated backend's pid (the lock is free once that backend has exited)."""
        row = await conn.fetchrow(
            "SELECT r.backend_pid, r.holder, "
            "extract(epoch FROM now() - r.heartbeat_at)::float8 AS age "
            "FROM outbox_relay r JOIN pg_stat_activity a ON a.pid = r.backend_pid "
            "WHERE r.id = 1 AND a.application_name = $1 AND a.datname = current_database() "
            "AND a.pid <> pg_backend_pid() "
            "AND r.heartbeat_at < now() - make_interval(secs => $2)",
            self._app,
            self._lease_s,
        )
        if row is None:
            return None
        pid = int(row["backend_pid"])
        if not await conn.fetchval("SELECT pg_terminate_backend($1)", pid):
            return None
        log.warning(
            "took over the outbox relay of %s from %s: its heartbeat is %.1f s old (lease "
            "%.1f s); terminated its database session (pid %d)",
            self._key,
            row["holder"],
            row["age"],
            self._lease_s,
            pid,
        )
        return pid
