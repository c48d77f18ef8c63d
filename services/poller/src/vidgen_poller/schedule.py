"""The adaptive polling schedule: when to ask Runway about a task next (pure functions).

All times are seconds since the task was submitted. A task's *duration* is counted from
``active_since_s``: its submission, or, for a task Runway held ``THROTTLED``, the last poll
that still saw it throttled (so a long wait in Runway's queue does not skew the estimate).

How the next poll is chosen (:func:`next_poll_in`):

* **Not plausibly done yet**: the first poll waits until ``first_poll_fraction`` of the
  *early* duration (a low quantile of recent durations of the same model and video length,
  :func:`learn`; a prior until enough have been seen). No calls are spent before that.
* **THROTTLED**: Runway is queueing the task behind the organisation's concurrency limit;
  polls back off geometrically (``throttled_interval_s * throttled_growth ** n``, capped).
* **PENDING, or RUNNING without progress**: aim part of the way to the learned median.
* **RUNNING with progress**: estimate the end (:func:`estimate_end`). Two observations with
  different progress give a rate, hence an end known to within the progress granularity:
  poll ``lead_s`` before it; then, when the end is known to within half the dense interval
  (Runway's progress comes in 1 % steps, ``progress_step``: 35 ms of a 3.5 s task, 0.45 s
  of a 45 s one), just after the latest it can be. One observation gives an end that
  depends on when the task started (unknown): go ``single_point_fraction`` of the way, to
  measure the rate.
* **Near the end**: dense polls every ``dense_interval_s`` (this bounds the delay between
  the end and our noticing it).
* **Overdue** (past the estimate): the interval grows with the overdue time, up to
  ``overdue_max_interval_s``, so a wrong estimate costs few calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

Point = tuple[float, float]  # (seconds since submission, progress 0..1)


class ScheduleConfig(BaseModel):
    """The schedule's knobs (the poller's ``VIDGEN_SCHEDULE`` setting, as JSON)."""

    model_config = ConfigDict(frozen=True)

    first_poll_fraction: float = Field(0.8, gt=0, le=1)
    dense_interval_s: float = Field(0.2, gt=0)
    lead_s: float = Field(0.3, ge=0)
    progress_step: float = Field(0.01, gt=0, le=1)
    min_interval_s: float = Field(0.2, gt=0)
    max_interval_s: float = Field(30.0, gt=0)
    single_point_fraction: float = Field(0.7, gt=0, le=1)
    prior_fraction: float = Field(0.5, gt=0, le=1)
    throttled_interval_s: float = Field(5.0, gt=0)
    throttled_growth: float = Field(1.5, ge=1)
    throttled_max_interval_s: float = Field(30.0, gt=0)
    overdue_growth: float = Field(0.1, ge=0)
    overdue_max_interval_s: float = Field(5.0, gt=0)
    queue_guess_s: float = Field(2.0, ge=0)
    early_quantile: float = Field(0.05, ge=0, le=0.5)
    min_samples: int = Field(5, ge=1)
    prior_early_fraction: float = Field(0.5, gt=0, le=1)


@dataclass(frozen=True)
class DurationStats:
    """Recent durations of one kind of task: the median and an early (low) quantile."""

    median_s: float
    early_s: float
    samples: int = 0


class Confidence(StrEnum):
    PRIOR = "prior"  # no progress seen: the learned median
    SINGLE = "single"  # one progress observation: depends on the unknown start
    RATE = "rate"  # two observations: a measured rate


@dataclass(frozen=True)
class Observed:
    """What the poller knows of one task."""

    status: str = "SUBMITTED"  # the last status seen; SUBMITTED before the first poll
    active_since_s: float = 0.0
    last_not_running_s: float | None = None  # last poll that saw PENDING/THROTTLED
    last_poll_s: float | None = None
    points: tuple[Point, ...] = ()  # RUNNING polls with rising progress (last two)
    throttled_streak: int = 0
    was_throttled: bool = False


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def learn(samples: Sequence[float], prior_s: float, cfg: ScheduleConfig) -> DurationStats:
    """Stats of recent durations; the prior until ``min_samples`` have been seen."""
    values = sorted(s for s in samples if s > 0)
    if len(values) < cfg.min_samples:
        return DurationStats(prior_s, prior_s * cfg.prior_early_fraction, len(values))
    return DurationStats(quantile(values, 0.5), quantile(values, cfg.early_quantile), len(values))


def observe(before: Observed, status: str, progress: float | None, at_s: float) -> Observed:
    """The knowledge after a poll at ``at_s`` saw ``status`` (and ``progress`` if RUNNING)."""
    after = replace(before, status=status, last_poll_s=at_s)
    if status == "THROTTLED":
        return replace(
            after,
            throttled_streak=before.throttled_streak + 1,
            was_throttled=True,
            last_not_running_s=at_s,
        )
    if before.status == "THROTTLED":  # admitted since the last poll, at the earliest then
        after = replace(after, active_since_s=before.last_poll_s or 0.0, throttled_streak=0)
    if status == "PENDING":
        return replace(after, last_not_running_s=at_s)
    rising = progress is not None and (not before.points or progress > before.points[-1][1])
    if status == "RUNNING" and progress is not None and progress > 0 and rising:
        after = replace(after, points=(*before.points, (at_s, progress))[-2:])
    return after


def estimate_end(
    obs: Observed, stats: DurationStats, cfg: ScheduleConfig
) -> tuple[float, Confidence]:
    """When the task should end (seconds since submission), and how sure that is."""
    if len(obs.points) >= 2:
        (t1, p1), (t2, p2) = obs.points[-2], obs.points[-1]
        rate = (p2 - p1) / (t2 - t1)
        return t2 + (1.0 - p2) / rate, Confidence.RATE
    if obs.points:
        t, p = obs.points[-1]
        start = obs.active_since_s + cfg.queue_guess_s
        if obs.last_not_running_s is not None:
            start = max(start, obs.last_not_running_s)
        start = min(start, t * 0.9)
        return start + (t - start) / p, Confidence.SINGLE
    return obs.active_since_s + stats.median_s, Confidence.PRIOR


def next_poll_in(obs: Observed, now_s: float, stats: DurationStats, cfg: ScheduleConfig) -> float:
    """Seconds from ``now_s`` until the next poll of a task that is not finished."""
    if obs.status == "THROTTLED":
        delay = cfg.throttled_interval_s * cfg.throttled_growth ** max(0, obs.throttled_streak - 1)
        return _clamp(min(delay, cfg.throttled_max_interval_s), cfg)
    first = obs.active_since_s + cfg.first_poll_fraction * stats.early_s
    if not obs.points and now_s < first - cfg.min_interval_s:
        return _clamp(first - now_s, cfg)
    end, confidence = estimate_end(obs, stats, cfg)
    remaining = end - now_s
    if remaining <= 0:
        overdue = -remaining
        delay = cfg.dense_interval_s + cfg.overdue_growth * overdue
        return _clamp(min(delay, max(cfg.overdue_max_interval_s, cfg.dense_interval_s)), cfg)
    if confidence is Confidence.RATE:
        target = remaining - cfg.lead_s
        within = _end_known_within(obs, cfg)
        if target < cfg.min_interval_s and within <= cfg.dense_interval_s / 2:
            return _clamp(remaining + within, cfg)  # the lead poll is behind: aim at the end
    elif confidence is Confidence.SINGLE:
        target = remaining * cfg.single_point_fraction
    else:
        target = remaining * cfg.prior_fraction
    return _clamp(max(target, cfg.dense_interval_s), cfg)


def _end_known_within(obs: Observed, cfg: ScheduleConfig) -> float:
    """Seconds the progress rate's end may be off by: one progress step at that rate."""
    (t1, p1), (t2, p2) = obs.points[-2], obs.points[-1]
    return cfg.progress_step * (t2 - t1) / (p2 - p1)


def _clamp(delay: float, cfg: ScheduleConfig) -> float:
    return min(cfg.max_interval_s, max(cfg.min_interval_s, delay))
