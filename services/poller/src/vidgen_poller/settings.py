"""The poller's settings (environment prefix ``VIDGEN_``; Runway's are the SDK's names)."""

from __future__ import annotations

from pydantic import Field

from vidgen_common.settings import ServiceSettings
from vidgen_poller.deadline import Bounds
from vidgen_poller.schedule import ScheduleConfig
from vidgen_runway.catalog import typical_task_times
from vidgen_runway.settings import RunwaySettings


class PollerSettings(ServiceSettings):
    service_name: str = Field(
        "poller", description="name in logs, traces and event sources; its PostgreSQL schema"
    )
    runway: RunwaySettings = Field(default_factory=RunwaySettings)
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="knobs of the adaptive schedule (JSON)"
    )

    duration_priors_s: dict[str, float] = Field(
        default_factory=typical_task_times, description="expected task time per model until learned"
    )
    default_duration_prior_s: float = Field(
        60.0, gt=0, description="expected task time of models without a prior"
    )
    learn_window: int = Field(100, ge=1, description="recent durations kept per kind of task")
    learn_refresh_s: float = Field(10.0, gt=0, description="re-read durations of all replicas")

    max_concurrent_polls: int = Field(32, ge=1, description="Runway calls in flight per replica")
    claim_lease_s: float = Field(
        30.0,
        gt=0,
        description="a claimed poll not finished by then is due again (its replica died)",
    )
    max_idle_s: float = Field(1.0, gt=0, description="longest sleep of the scheduler loop")
    deadline_s: float = Field(
        900.0,
        gt=0,
        description="a task Runway still reports PENDING/RUNNING this long after it left "
        "Runway's queue is cancelled at Runway and fails runway_timeout (a finished task "
        "is reported as it finished, however late)",
    )
    throttled_deadline_s: float = Field(
        3600.0,
        gt=0,
        description="a task still THROTTLED (queued behind the organisation's concurrency "
        "limit) this long after submission is cancelled at Runway (refunded) and fails "
        "runway_timeout; throttled time does not count towards deadline_s",
    )
    unanswered_s: float = Field(
        3600.0,
        gt=0,
        description="a task Runway has not answered about at all (errors only) for this "
        "long fails runway_unreachable; until then it is asked again with backoff",
    )
    progress_step: float = Field(0.1, gt=0, le=1, description="progress change worth an event")
    retry_base_s: float = Field(1.0, ge=0, description="first retry delay of a failed poll")
    retry_cap_s: float = Field(30.0, ge=0, description="longest retry delay of a failed poll")
    done_retention_s: float = Field(7 * 86400.0, gt=0, description="finished tasks kept")

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.deadline_s, self.throttled_deadline_s, self.unanswered_s)

    def check_safe(self) -> None:
        super().check_safe()
        self.runway.check_safe(self.env)
