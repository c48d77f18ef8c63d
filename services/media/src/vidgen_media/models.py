"""The ``transfers`` table: one row per generation, the state of getting its video stored.

States: ``downloading`` → ``stored`` (object uploaded, checksum known) → ``completed``, or
``failed``; ``waiting_for_url`` after a 403 (a fresh URL was asked for); ``retrying`` after a
transient failure that the next delivery will retry. The SQLModel class and :data:`MIGRATIONS`
describe the same table: change both together (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import BigInteger, DateTime
from sqlmodel import Field, SQLModel

from vidgen_common.migrations import Migration

TransferState = Literal[
    "downloading", "stored", "waiting_for_url", "retrying", "completed", "failed"
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed"})


def _now() -> datetime:
    return datetime.now(UTC)


class Transfer(SQLModel, table=True):
    __tablename__ = "transfers"

    generation_id: str = Field(primary_key=True)
    user_id: str
    runway_task_id: str
    state: str = Field(description="a TransferState")
    video_key: str
    thumbnail_key: str | None = None
    event_id: str = Field(description="the VideoReady event being (or last) handled")
    attempts: int = Field(default=0, description="downloads started")
    failures: int = Field(default=0, description="transient failures so far")
    url_refreshes: int = Field(default=0, description="VideoUrlExpired events emitted")
    requests: int = Field(default=0, description="GETs of the download that stored it")
    resumes: int = Field(default=0, description="downloads continued with Range")
    restarts: int = Field(default=0, description="uploads aborted and started again from 0")
    size_bytes: int | None = Field(default=None, sa_type=BigInteger)
    sha256: str | None = None
    etag: str | None = Field(default=None, description="ETag of the stored object (identifies it)")
    content_type: str | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_now, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "media",
        1,
        "transfers",
        (
            """CREATE TABLE transfers (
                generation_id text PRIMARY KEY,
                user_id text NOT NULL,
                runway_task_id text NOT NULL,
                state text NOT NULL CHECK (state IN ('downloading', 'stored',
                    'waiting_for_url', 'retrying', 'completed', 'failed')),
                video_key text NOT NULL,
                thumbnail_key text,
                event_id text NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                failures integer NOT NULL DEFAULT 0,
                url_refreshes integer NOT NULL DEFAULT 0,
                requests integer NOT NULL DEFAULT 0,
                resumes integer NOT NULL DEFAULT 0,
                restarts integer NOT NULL DEFAULT 0,
                size_bytes bigint,
                sha256 text,
                etag text,
                content_type text,
                duration_seconds double precision,
                width integer,
                height integer,
                codec text,
                error_code text,
                error_message text,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                completed_at timestamptz
            )""",
            "CREATE INDEX transfers_state ON transfers (state) WHERE state NOT IN "
            "('completed', 'failed')",
        ),
    ),
)
