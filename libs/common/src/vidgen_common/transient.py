"""Is a failure transient (a dependency is away for now) or is retrying pointless?

:func:`is_transient` walks an exception and its causes and answers True when any of them says
"a dependency did not answer or refused for now": PostgreSQL unreachable, restarting, failing
over, out of connections, a serialisation failure or deadlock; Kafka errors aiokafka marks as
retriable; the object store unreachable or answering 5xx/SlowDown; network errors and timeouts;
and :class:`~vidgen_common.errors.TransientError`, which code raises to say so explicitly.
Consumers retry transient failures until the dependency is back and never dead-letter them;
everything else gets a bounded number of tries (see :mod:`vidgen_common.bus.consumer`).

:class:`~vidgen_common.errors.PermanentError` and event decoding errors are never transient,
whatever caused them.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from aiokafka.errors import KafkaError
from minio.error import S3Error
from sqlalchemy import exc as sa_exc

from vidgen_common.errors import EventError, PermanentError, TransientError

# SQLSTATE classes that mean "not now": 08 connection exception, 40 transaction rollback
# (serialisation failure, deadlock), 53 insufficient resources (too many connections, disk
# full), 57 operator intervention (admin/crash shutdown, cannot connect now, query cancelled
# by a statement timeout), 58 system error (I/O).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "XMinioServerNotInitialized",
    }
)


_NETWORK_ERROR_NAMES = frozenset(
    {
        "MaxRetryError",
        "NewConnectionError",
        "ProtocolError",
        "ConnectError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "NetworkError",
    }
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def _says_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError):  # refused, unreachable, reset, broken pipe, ...
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError)):
        # "connection is closed", "cannot perform operation: another operation is in
        # progress" after a dropped connection
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or type(exc).__name__ in (
            "KafkaConnectionError",
            "KafkaTimeoutError",
            "NodeNotReadyError",
        )
    if isinstance(exc, S3Error):
        return exc.code in _TRANSIENT_S3_CODES
    module, name = type(exc).__module__, type(exc).__name__
    # urllib3 (under minio) and httpx network failures that are not OSErrors
    return module.startswith(("urllib3", "httpx", "httpcore")) and (
        "Timeout" in name or name in _NETWORK_ERROR_NAMES
    )


def is_transient(exc: BaseException) -> bool:
    """True when retrying later can succeed because a dependency is away (see module doc)."""
    if isinstance(exc, (PermanentError, EventError)):
        return False
    return any(_says_transient(link) for link in _chain(exc))
