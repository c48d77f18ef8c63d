"""The generator's tables (schema ``generator``) and their migrations, kept in step.

``submissions``: one row per Runway task the generator means to create, keyed by
``(generation_id, attempt)``. Its ``state`` moves only forward::

    pending ──claim──▶ claimed ──intent committed──▶ intent ──task id committed──▶ submitted
       ▲                  │ (lease expired)            │
       └──────────────────┘◀──── 429/5xx: retry_at ────┘ (definitely not created)
    pending/claimed ──cancel──▶ cancelled        intent ──no answer──▶ failed (policy) | pending

The ``claimed → intent`` step is a compare-and-set on ``claim_token``, committed *before*
the create is sent: at most one create per row is ever in flight, whatever the number of
replicas. ``task_ended_at`` is set when the task's end is heard of (for the concurrency
budget). ``generator_cancels`` remembers cancel requests, whatever order events arrive in.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from vidgen_common.migrations import Migration

STATES = ("pending", "claimed", "intent", "submitted", "failed", "cancelled")


class Submission(SQLModel, table=True):
    __tablename__ = "submissions"

    generation_id: str = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    user_id: str
    project_id: str
    image_key: str
    image_content_type: str
    prompt: str
    model: str
    ratio: str
    duration: int
    seed: int | None = None
    state: str
    tries: int = 0
    retry_at: datetime
    claim_token: str | None = None
    lease_until: datetime | None = None
    intent_at: datetime | None = None
    runway_task_id: str | None = Field(default=None, unique=True)
    submitted_at: datetime | None = None
    estimated_cost_credits: int | None = None
    task_ended_at: datetime | None = None
    cost_credits: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    created_at: datetime
    updated_at: datetime


class GeneratorCancel(SQLModel, table=True):
    __tablename__ = "generator_cancels"

    generation_id: str = Field(primary_key=True)
    requested_at: datetime


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "generator",
        1,
        "submissions and cancels",
        (
            f"""CREATE TABLE submissions (
                generation_id text NOT NULL,
                attempt int NOT NULL CHECK (attempt >= 1),
                user_id text NOT NULL,
                project_id text NOT NULL,
                image_key text NOT NULL,
                image_content_type text NOT NULL,
                prompt text NOT NULL,
                model text NOT NULL,
                ratio text NOT NULL,
                duration int NOT NULL,
                seed bigint,
                state text NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in STATES)})),
                tries int NOT NULL DEFAULT 0,
                retry_at timestamptz NOT NULL,
                claim_token text,
                lease_until timestamptz,
                intent_at timestamptz,
                runway_task_id text UNIQUE,
                submitted_at timestamptz,
                estimated_cost_credits int,
                task_ended_at timestamptz,
                cost_credits int,
                error_code text,
                error_message text,
                traceparent text,
                tracestate text,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (generation_id, attempt)
            )""",
            "CREATE INDEX submissions_due ON submissions (retry_at) WHERE state = 'pending'",
            "CREATE INDEX submissions_in_flight ON submissions (model) "
            "WHERE state IN ('claimed', 'intent', 'submitted') AND task_ended_at IS NULL",
            "CREATE INDEX submissions_intents ON submissions (intent_at) WHERE state = 'intent'",
            """CREATE TABLE generator_cancels (
                generation_id text PRIMARY KEY,
                requested_at timestamptz NOT NULL
            )""",
        ),
    ),
)
