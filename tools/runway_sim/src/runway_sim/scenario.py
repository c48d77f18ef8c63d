"""Scenario knobs: how the simulated Runway behaves (timings, limits, failures, faults).

A `Scenario` is plain data. It starts from `Settings.scenario` (environment
`RUNWAY_SIM_SCENARIO='{"time_scale": 0.01}'` or `RUNWAY_SIM_SCENARIO__TIME_SCALE=0.01`) and can be
read or changed at runtime through `GET/PUT /_sim/scenario`. Fault rules that fire on "the next
N requests" count down in place, so `GET /_sim/scenario` shows what is left.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runway_sim.failures import is_valid_code
from vidgen_runway.catalog import MODELS

Endpoint = Literal[
    "create", "retrieve", "delete", "organization", "uploads", "upload_file", "output"
]
API_ENDPOINTS: tuple[Endpoint, ...] = ("create", "retrieve", "delete", "organization", "uploads")


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Dist(_Knobs):
    """A duration in seconds: lognormal around `median_s` (fixed when `sigma` is 0), clamped."""

    median_s: float = Field(ge=0)
    sigma: float = Field(default=0.0, ge=0)
    min_s: float = Field(default=0.0, ge=0)
    max_s: float | None = None

    def draw(self, rng: random.Random) -> float:
        """One sample; always consumes exactly one draw so sequences stay reproducible."""
        value = self.median_s * math.exp(rng.gauss(0.0, 1.0) * self.sigma)
        value = max(value, self.min_s)
        return min(value, self.max_s) if self.max_s is not None else value


class ModelLimits(_Knobs):
    """A tier's per-model limits, as `GET /v1/organization` reports them (None: no limit)."""

    max_concurrent: int | None = Field(default=3, ge=0)
    max_daily: int | None = Field(default=500, ge=0)


class OrgConfig(_Knobs):
    credit_balance: int = 100_000
    max_monthly_credit_spend: int = 100_000
    models: dict[str, ModelLimits] = Field(
        default_factory=lambda: {name: ModelLimits() for name in MODELS}
    )


class FaultRule(_Knobs):
    """Fires for the next `next_n` matching requests, then with probability `rate`.

    `endpoints` limits the rule to some endpoints (default: every `/v1` endpoint).
    """

    next_n: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0, le=1)
    endpoints: list[Endpoint] | None = None

    def applies_to(self, endpoint: str) -> bool:
        allowed = self.endpoints if self.endpoints is not None else API_ENDPOINTS
        return endpoint in allowed

    def fire(self, rng: random.Random) -> bool:
        """Consume one "next N" if any is left, else roll the dice (no draw when rate is 0)."""
        if self.next_n > 0:
            self.next_n -= 1
            return True
        return self.rate > 0 and rng.random() < self.rate


class LatencyRule(FaultRule):
    """Added latency before the request is handled: `seconds` plus up to `jitter_s`."""

    seconds: float = Field(default=0.5, ge=0)
    jitter_s: float = Field(default=0.0, ge=0)


class ServerErrorRule(FaultRule):
    status: int = Field(default=503, ge=500, le=599)


class RateLimitRule(FaultRule):
    """429 with `Retry-After` (whole seconds, rounded up) and `retry-after-ms`."""

    retry_after_s: float = Field(default=1.0, ge=0)


class LostCreateRule(_Knobs):
    """The task is created (and charged) but its `POST /v1/image_to_video` response is lost.

    `hang`: the response is held for `hang_s` (or until the client gives up), then sent late.
    `drop`: the connection is closed without any response.
    """

    next_n: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0, le=1)
    mode: Literal["hang", "drop"] = "hang"
    hang_s: float = Field(default=30.0, ge=0)

    def fire(self, rng: random.Random) -> bool:
        if self.next_n > 0:
            self.next_n -= 1
            return True
        return self.rate > 0 and rng.random() < self.rate


class CreateThenErrorRule(_Knobs):
    """The task is created (and charged), then the create is answered with an error.

    `500`: `{"error": ...}` with status 500. `504`: a load balancer's HTML "504 Gateway
    Time-out". `broken_body`: status 200 and `application/json`, but the body is cut in the
    middle of the JSON (well-formed HTTP, unreadable payload). What an API client must not take
    for "nothing was created".
    """

    next_n: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0, le=1)
    mode: Literal["500", "504", "broken_body"] = "500"

    def fire(self, rng: random.Random) -> bool:
        if self.next_n > 0:
            self.next_n -= 1
            return True
        return self.rate > 0 and rng.random() < self.rate


class DownloadFaultRule(_Knobs):
    """Output download faults (GET only) for the next `next_n` downloads.

    `truncate`: a short but well-formed response (`Content-Length` = `after_bytes`).
    `reset`: full `Content-Length` announced, connection closed after `after_bytes`.
    """

    next_n: int = Field(default=0, ge=0)
    mode: Literal["truncate", "reset"] = "reset"
    after_bytes: int = Field(default=1024, ge=0)


# The bounds of each model's simulated running time; its median is the catalog's typical
# task time (the poller's prior), so an unconfigured simulator behaves as the poller expects.
_RUN_BOUNDS_S: dict[str, tuple[float, float]] = {
    "gen4_turbo": (25, 120),
    "gen4.5": (45, 240),
    "veo3.1": (40, 200),
    "veo3.1_fast": (20, 120),
}


def _default_durations() -> dict[str, Dist]:
    return {
        name: Dist(median_s=MODELS[name].typical_task_s, sigma=0.3, min_s=low, max_s=high)
        for name, (low, high) in _RUN_BOUNDS_S.items()
    }


class Scenario(_Knobs):
    """Every runtime knob of the simulator. See tools/runway_sim/README.md for a tour."""

    seed: int | None = None
    time_scale: float = Field(default=1.0, ge=0)
    durations: dict[str, Dist] = Field(default_factory=_default_durations)
    default_duration: Dist = Field(default_factory=lambda: Dist(median_s=60, sigma=0.3, min_s=20))
    queue: Dist = Field(default_factory=lambda: Dist(median_s=2, sigma=0.5, min_s=0.5, max_s=15))
    failure_rates: dict[str, float] = Field(default_factory=dict)
    moderation_words: list[str] = Field(default_factory=list)
    org: OrgConfig = Field(default_factory=OrgConfig)
    latency: LatencyRule = Field(default_factory=LatencyRule)
    server_errors: ServerErrorRule = Field(default_factory=ServerErrorRule)
    rate_limit: RateLimitRule = Field(default_factory=RateLimitRule)
    lost_create: LostCreateRule = Field(default_factory=LostCreateRule)
    create_then_error: CreateThenErrorRule = Field(default_factory=CreateThenErrorRule)
    download_faults: DownloadFaultRule = Field(default_factory=DownloadFaultRule)
    output_url_ttl_s: float = Field(default=300.0, gt=0)
    output_pad_bytes: int = Field(default=0, ge=0, le=2**31)
    asset_errors_at_create: bool = False

    @model_validator(mode="after")
    def _check_failure_rates(self) -> Scenario:
        for code, rate in self.failure_rates.items():
            if not is_valid_code(code):
                raise ValueError(f"failure code {code!r} is not like SAFETY.INPUT.TEXT")
            if not 0 <= rate <= 1:
                raise ValueError(f"failure rate for {code} must be within 0..1")
        if sum(self.failure_rates.values()) > 1 + 1e-9:
            raise ValueError("failure rates add up to more than 1")
        return self

    def run_dist(self, model: str) -> Dist:
        return self.durations.get(model, self.default_duration)

    def limits(self, model: str) -> ModelLimits:
        return self.org.models.get(model, ModelLimits(max_concurrent=None, max_daily=None))


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` laid over `base`: nested dicts merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged(current: Scenario, patch: dict[str, Any]) -> Scenario:
    """A new scenario: `current` with `patch` merged in (validated)."""
    return Scenario.model_validate(deep_merge(current.model_dump(mode="json"), patch))


def fast_scenario(run_s: float = 0.2, queue_s: float = 0.02, **extra: Any) -> dict[str, Any]:
    """A scenario patch for tests: every model runs `run_s` after `queue_s` of PENDING."""
    patch: dict[str, Any] = {
        "time_scale": 1.0,
        "queue": {"median_s": queue_s, "sigma": 0, "min_s": 0, "max_s": None},
        "durations": {
            name: {"median_s": run_s, "sigma": 0, "min_s": 0, "max_s": None} for name in MODELS
        },
        "default_duration": {"median_s": run_s, "sigma": 0, "min_s": 0, "max_s": None},
    }
    return deep_merge(patch, extra)
