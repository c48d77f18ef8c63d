"""The fair-share order of waiting generations, one definition for the generator (which
hands out Runway slots in it) and the gateway (which shows each waiting generation its place).

Per model, a waiting generation's score is::

    (tasks of its user for that model in flight + its rank among its user's waiting ones)
    / the user's weight

lowest first; ties by request time, then generation id. The rank within one user is by
priority (high, normal, low), then first in first out, starting at 1. So slots go round-robin
between users (a user with 2 tasks running waits behind a newcomer's first request), a weight
of 2 gets twice the share, and one user's 200 requests never starve another's single one.

The order does not change as slots are handed out: picking a user's best row adds 1 to its
in-flight count and takes 1 from the rank of each of its other rows, so their scores stay;
one pass can therefore hand several slots in this order without re-reading.

``VIDGEN_USER_WEIGHTS`` (JSON, e.g. ``{"user-a": 2}``) sets weights; an unlisted user weighs 1.
Both services must be given the same weights for the gateway's positions to match.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PRIORITIES = {"low": 0, "normal": 1, "high": 2}

# SQL pieces: a weights relation from two array parameters (:weight_users, :weight_values)
# and the score's expression over ``running`` (n per user) and ``rn`` (rank within the user).
WEIGHTS_SQL = (
    "SELECT * FROM unnest(CAST(:weight_users AS text[]), CAST(:weight_values AS float8[])) "
    "AS w(user_id, weight)"
)
SCORE_SQL = "(coalesce(running.n, 0) + q.rn) / coalesce(w.weight, 1.0)"


class FairShareSettings(BaseSettings):
    """Weights of the fair share between users (environment prefix ``VIDGEN_``)."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore")

    user_weights: dict[str, float] = Field(
        default_factory=dict,
        description="share of the Runway slots per user, as JSON (unlisted users weigh 1); "
        "the generator and the gateway need the same value",
    )

    @field_validator("user_weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(u for u, w in value.items() if not (w > 0 and math.isfinite(w)))
        if bad:
            raise ValueError(f"weights must be finite and > 0 (not for {', '.join(bad)})")
        return value

    def weight_params(self) -> dict[str, list[str] | list[float]]:
        """The parameters :data:`WEIGHTS_SQL` reads."""
        users = sorted(self.user_weights)
        return {
            "weight_users": users,
            "weight_values": [float(self.user_weights[u]) for u in users],
        }


def score(in_flight: int, rank: int, weight: float = 1.0) -> float:
    """A waiting generation's score (lower goes first); ``rank`` starts at 1."""
    return (in_flight + rank) / weight
