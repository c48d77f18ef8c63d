"""The accepted model/ratio/duration table matches the runwayml SDK's own types."""

from __future__ import annotations

import inspect
import typing
from typing import Any, get_args

import pytest
from runwayml.types import image_to_video_create_params as sdk

from vidgen_gateway.runway_models import (
    DEFAULT_MODEL,
    DEFAULT_RATIO,
    MODELS,
    PROMPT_MAX_UTF16,
    ModelName,
    RatioName,
    problems,
    utf16_length,
)

SDK_CLASSES = {
    "gen4_turbo": sdk.Gen4Turbo,
    "gen4.5": sdk.Gen4_5,
    "veo3.1": sdk.Veo3_1,
    "veo3.1_fast": sdk.Veo3_1Fast,
}


def _literal_values(tp: Any) -> set[Any]:
    """Every value a Literal inside ``tp`` (through Annotated, Required, Union) allows."""
    if typing.get_origin(tp) is typing.Literal:
        return set(get_args(tp))
    values: set[Any] = set()
    for arg in get_args(tp):
        values |= _literal_values(arg)
    return values


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ratios_and_durations_match_the_sdk(name: str) -> None:
    hints = typing.get_type_hints(SDK_CLASSES[name], include_extras=True)
    assert _literal_values(hints["model"]) == {name}
    assert set(MODELS[name].ratios) == _literal_values(hints["ratio"])
    durations = _literal_values(hints["duration"])
    if durations:  # a Literal in the SDK: exactly those
        assert set(MODELS[name].durations) == durations
    else:  # a plain int: the range Runway documents for its gen4 models
        assert MODELS[name].durations == tuple(range(2, 11))
        assert "Must be an integer from 2 to 10." in inspect.getsource(sdk.Gen4_5)


def test_literals_offered_by_the_api_are_the_table() -> None:
    assert set(get_args(ModelName)) == set(MODELS)
    assert set(get_args(RatioName)) == {r for m in MODELS.values() for r in m.ratios}
    assert DEFAULT_MODEL in MODELS
    assert DEFAULT_RATIO in MODELS[DEFAULT_MODEL].ratios
    assert MODELS[DEFAULT_MODEL].default_duration == 5
    assert MODELS["veo3.1"].default_duration == 4


def test_prompt_limit_is_the_sdks() -> None:
    assert "prompt_text" in typing.get_type_hints(sdk.Gen4Turbo)
    assert f"up to {PROMPT_MAX_UTF16} characters (measured in UTF-16 code units)" in (
        inspect.getsource(sdk)
    )
    assert utf16_length("a\U0001f600") == 3


def test_problems_names_each_refused_field() -> None:
    assert problems("gen4_turbo", "1280:720", 5) == []
    assert [p["field"] for p in problems("veo3.1", "960:960", 5)] == ["ratio", "duration"]
    assert [p["field"] for p in problems("gen3a_turbo", "1280:720", 5)] == ["model"]
