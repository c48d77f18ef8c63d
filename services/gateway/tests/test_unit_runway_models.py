"""The API's model/ratio/duration rules are the catalog's, with the API's own defaults.

(The catalog itself is checked against the runwayml SDK's types in libs/runway's tests.)
"""

from __future__ import annotations

from typing import get_args

from vidgen_gateway.runway_models import (
    DEFAULT_MODEL,
    DEFAULT_RATIO,
    MODELS,
    ModelName,
    RatioName,
    default_duration,
    problems,
)


def test_literals_offered_by_the_api_are_the_table() -> None:
    assert set(get_args(ModelName)) == set(MODELS)
    assert set(get_args(RatioName)) == {r for m in MODELS.values() for r in m.ratios}
    assert DEFAULT_MODEL in MODELS
    assert DEFAULT_RATIO in MODELS[DEFAULT_MODEL].ratios
    assert default_duration(MODELS[DEFAULT_MODEL]) == 5
    assert default_duration(MODELS["veo3.1"]) == 4


def test_problems_names_each_refused_field() -> None:
    assert problems("gen4_turbo", "1280:720", 5) == []
    assert [p["field"] for p in problems("veo3.1", "960:960", 5)] == ["ratio", "duration"]
    assert [p["field"] for p in problems("gen3a_turbo", "1280:720", 5)] == ["model"]
