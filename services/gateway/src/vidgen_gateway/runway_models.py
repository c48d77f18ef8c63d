"""What the API accepts for Runway's ``image_to_video``: the catalog's rules and the API's defaults.

The rules (models, their ratios and durations, the prompt and seed limits) are
:mod:`vidgen_runway.catalog`'s, checked there against the ``runwayml`` SDK's types. What this
module adds is the API's own choice when a request leaves a parameter out: ``gen4_turbo``,
``1280:720``, and 5 s where the model allows it, else its shortest duration.
"""

from __future__ import annotations

from vidgen_runway.catalog import (
    MAX_DURATION,
    MIN_DURATION,
    MODELS,
    PROMPT_MAX_UTF16,
    SEED_MAX,
    ModelFacts,
    ModelName,
    RatioName,
    utf16_length,
)

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_MODEL",
    "DEFAULT_RATIO",
    "MAX_DURATION",
    "MIN_DURATION",
    "MODELS",
    "PROMPT_MAX_UTF16",
    "SEED_MAX",
    "ModelName",
    "RatioName",
    "default_duration",
    "problems",
    "utf16_length",
]

DEFAULT_MODEL = "gen4_turbo"
DEFAULT_RATIO = "1280:720"
DEFAULT_DURATION = 5


def default_duration(facts: ModelFacts) -> int:
    """5 s where the model allows it, else its shortest duration."""
    return DEFAULT_DURATION if DEFAULT_DURATION in facts.durations else facts.durations[0]


def problems(model: str, ratio: str, duration: int) -> list[dict[str, object]]:
    """Why Runway would refuse this combination (empty when it accepts it)."""
    facts = MODELS.get(model)
    if facts is None:
        return [{"field": "model", "message": "unknown model", "allowed": sorted(MODELS)}]
    found: list[dict[str, object]] = []
    if ratio not in facts.ratios:
        found.append(
            {"field": "ratio", "message": f"not offered by {model}", "allowed": list(facts.ratios)}
        )
    if duration not in facts.durations:
        found.append(
            {
                "field": "duration",
                "message": f"not offered by {model}",
                "allowed": list(facts.durations),
            }
        )
    return found
