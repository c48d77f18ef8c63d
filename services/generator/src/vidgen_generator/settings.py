"""The generator's settings (environment prefix ``VIDGEN_``; Runway's are the SDK's names)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidgen_common.errors import ConfigurationError
from vidgen_common.fairshare import FairShareSettings
from vidgen_common.settings import ServiceSettings
from vidgen_runway.settings import RunwaySettings

UnknownPolicy = Literal["fail", "resubmit"]


class GeneratorSettings(ServiceSettings, FairShareSettings):
    service_name: str = Field(
        "generator", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    runway: RunwaySettings = Field(default_factory=RunwaySettings)

    # The one window that cannot be closed: Runway may have accepted a create whose answer we
    # never got (timeout, lost connection, crash before the commit). `fail` fails the
    # generation with `submission_unknown` (never pays twice); `resubmit` creates again (the
    # generation is not lost, but two tasks may be paid for).
    unknown_submission_policy: UnknownPolicy = Field(
        "fail",
        description="a create whose answer was lost: fail (submission_unknown, never pays "
        "twice) or resubmit (may pay for two tasks)",
    )
    # Whose create is still alive: each replica heart-beats a row by the database's clock; the
    # intents of a replica that stopped heart-beating follow the policy above.
    instance_heartbeat_s: float = Field(
        5.0, gt=0, description="how often a replica tells the database it is alive"
    )
    instance_dead_after_s: float = Field(
        30.0,
        gt=0,
        description="a replica silent this long (database clock) is dead: its creates in "
        "flight follow the unknown-submission policy (at least 3 heartbeats)",
    )
    intent_stale_s: float = Field(
        1800.0,
        gt=0,
        description="backstop: an intent older than this (database clock) follows the policy "
        "even if its replica still heart-beats (must exceed twice RUNWAY_TIMEOUT_S)",
    )
    record_retry_cap_s: float = Field(
        5.0,
        gt=0,
        description="longest wait between tries of recording a created task's id while the "
        "database is away (it is retried for as long as the process lives)",
    )

    # The prompt image: a data URI when small, else an ephemeral upload; a presigned URL of
    # our store only when that store is reachable from Runway.
    data_uri_max_bytes: int = Field(
        3 * 1024 * 1024, ge=0, le=5 * 1024 * 1024, description="largest data URI (encoded)"
    )
    store_publicly_reachable: bool = Field(
        False, description="send a presigned URL of our store instead (only if Runway can reach it)"
    )

    # Runway's limits.
    model_budgets: dict[str, int] = Field(
        default_factory=dict, description="tasks in flight allowed per model"
    )
    default_budget: int | None = Field(None, ge=0, description="budget of unlisted models")
    budget_from_organization: bool = Field(
        False, description="use maxConcurrentGenerations of /v1/organization where not set"
    )
    organization_refresh_s: float = Field(
        60.0,
        gt=0,
        description="how often /v1/organization is read (budget, daily usage, credit balance)",
    )
    # Runway's daily cap (a rolling 24 hours) and the organisation's credits hold generations
    # back (pending, GenerationWaiting) instead of failing them; see holds.py.
    watch_organization_credits: bool = Field(
        True,
        description="read creditBalance of /v1/organization and hold back the creates it does "
        "not cover (organization_out_of_credits) instead of sending them to be refused",
    )
    daily_cap_recheck_s: float = Field(
        900.0,
        gt=0,
        description="a model at Runway's daily cap is tried again after this when the end of "
        "its 24-hour window is unknown (no task of ours in it)",
    )
    budget_stale_s: float = Field(
        3600.0, gt=0, description="a task not heard of for this long no longer counts"
    )
    # Who gets a free slot: each user's fair share of a model's budget (see store.due), by
    # VIDGEN_USER_WEIGHTS (vidgen_common.fairshare, shared with the gateway's queue view).
    max_create_tries: int = Field(8, ge=1, description="tries of one create (429/5xx) per attempt")
    retry_base_s: float = Field(1.0, ge=0, description="first retry delay of a create, doubled")
    retry_cap_s: float = Field(60.0, ge=0, description="longest retry delay of a create")
    max_attempts: int = Field(
        3, ge=1, description="tasks per generation, counting resubmissions after BAD_OUTPUT"
    )

    # The submission loop.
    # Creates in flight per replica: more is more throughput, but a kill -9 of a replica can
    # orphan (lose the id of a paid task for) at most this many creates. See docs/operations.md.
    max_concurrent_submissions: int = Field(
        8,
        ge=1,
        description="creates (with their image uploads) in progress per replica; also the most "
        "paid tasks a kill -9 of one replica can orphan",
    )
    claim_lease_s: float = Field(60.0, gt=0, description="time to prepare the image")
    submit_poll_interval_s: float = Field(
        1.0, gt=0, description="longest sleep of the submission loop"
    )
    sweep_interval_s: float = Field(
        1.0,
        ge=0,
        description="longest time between two sweeps of the submission loop (expired claims, "
        "abandoned intents, late cancels); a pass woken by a task's end in between claims at "
        "once, without them",
    )
    stall_warn_s: float = Field(
        600.0,
        gt=0,
        description="a submission waiting longer than this is logged with why it waits "
        "(budget, Runway's Retry-After, a retry's due time)",
    )

    def check_safe(self) -> None:
        super().check_safe()
        self.runway.check_safe(self.env)
        if self.intent_stale_s <= self.create_deadline_s:
            raise ConfigurationError(
                "VIDGEN_INTENT_STALE_S must exceed twice RUNWAY_TIMEOUT_S plus the connect "
                "timeout, or a live create would be taken for a crashed one"
            )
        if self.instance_dead_after_s < 3 * self.instance_heartbeat_s:
            raise ConfigurationError(
                "VIDGEN_INSTANCE_DEAD_AFTER_S must be at least 3 x VIDGEN_INSTANCE_HEARTBEAT_S, "
                "or a live replica would be taken for a dead one"
            )

    @property
    def create_deadline_s(self) -> float:
        """The longest a create may take in all (the SDK's timeouts are per read)."""
        return 2 * self.runway.runway_timeout_s + self.runway.runway_connect_timeout_s
