"""Which failures mean "a dependency is away for now" (retried until it is back)."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError
from minio.error import S3Error
from sqlalchemy import exc as sa_exc

from vidgen_common.errors import MalformedEvent, PermanentError, StorageError, TransientError
from vidgen_common.transient import is_transient


def _s3(code: str) -> S3Error:
    return S3Error(None, code, "msg", "/vidgen/x", "req", "host")  # type: ignore[arg-type]


def _wrapped(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        TransientError("busy"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 19092)]"),
        UnknownTopicOrPartitionError(),
        _s3("SlowDown"),
        _s3("ServiceUnavailable"),
        _wrapped(ConnectionResetError(), StorageError("upload failed")),
        _wrapped(
            asyncpg.CannotConnectNowError("starting up"),
            sa_exc.DBAPIError("SELECT 1", {}, Exception("wrapped")),
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_dependency_away_for_now_is_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        KeyError("missing"),
        PermanentError("bad input"),
        _wrapped(ConnectionRefusedError(), PermanentError("given up on purpose")),
        MalformedEvent("not a CloudEvent"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedTableError("relation does not exist"),
        _s3("NoSuchKey"),
        _s3("AccessDenied"),
        _wrapped(_s3("NoSuchBucket"), StorageError("NoSuchBucket")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_failure_retrying_cannot_fix_is_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)
