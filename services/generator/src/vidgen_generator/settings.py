"""The generator's settings (environment prefix ``VIDGEN_``; Runway's are the SDK's names)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidgen_common.errors import ConfigurationError
from vidgen_common.runway import RunwaySettings
from vidgen_common.settings import ServiceSettings

UnknownPolicy = Literal["fail", "resubmit"]


class GeneratorSettings(ServiceSettings):
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
    intent_stale_s: float = Field(
        90.0,
        gt=0,
        description="An intent older than this without a task id is a crashed create "
        "(must exceed the Runway call timeout)",
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
        60.0, gt=0, description="how often /v1/organization is read for the budget"
    )
    budget_stale_s: float = Field(
        3600.0, gt=0, description="a task not heard of for this long no longer counts"
    )
    max_create_tries: int = Field(8, ge=1, description="tries of one create (429/5xx) per attempt")
    retry_base_s: float = Field(1.0, ge=0, description="first retry delay of a create, doubled")
    retry_cap_s: float = Field(60.0, ge=0, description="longest retry delay of a create")
    max_attempts: int = Field(
        3, ge=1, description="tasks per generation, counting resubmissions after BAD_OUTPUT"
    )

    # The submission loop.
    max_concurrent_submissions: int = Field(
        8, ge=1, description="creates (with their image uploads) in progress per replica"
    )
    claim_lease_s: float = Field(60.0, gt=0, description="time to prepare the image")
    submit_poll_interval_s: float = Field(
        1.0, gt=0, description="longest sleep of the submission loop"
    )

    def check_safe(self) -> None:
        super().check_safe()
        self.runway.check_safe(self.env)
        if self.intent_stale_s <= self.runway.runway_timeout_s:
            raise ConfigurationError(
                "VIDGEN_INTENT_STALE_S must exceed RUNWAY_TIMEOUT_S, or a live create would be "
                "taken for a crashed one"
            )
