"""The ``transfers`` table: one row per generation, the state of getting its video stored.

States: ``downloading`` → ``stored`` (object uploaded, checksum known) → ``completed``, or
``failed``; ``waiting_for_url`` after a 403 (a fresh URL was asked for); ``retrying`` after a
transient failure that the next delivery will retry. A delivery working on a row holds its
*lease* (``lease_token`` until ``lease_expires_at``, by the database's clock, renewed while it
works); every write of a delivery checks it still holds the lease. The SQLModel class and
``migrations/`` describe the same table: change both together (a test compares them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, DateTime
from sqlmodel import Field, SQLModel

from vidgen_common.clock import utc_now

TransferState = Literal[
    "downloading", "stored", "waiting_for_url", "retrying", "completed", "failed"
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed"})


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
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    lease_token: str | None = Field(default=None, description="the delivery working on it")
    lease_expires_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True), description="by the database's clock"
    )
    redrives: int = Field(default=0, description="fresh VideoReady asked for by the sweep")
