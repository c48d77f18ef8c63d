"""The catalog matches the runwayml SDK's own parameter types for ``image_to_video.create``.

The SDK's ``types/image_to_video_create_params.py`` has one ``TypedDict`` per model, with
``Literal`` types for the model name, the ratios, the image positions and (for some models)
the durations. An SDK release that changes any of them for a model in the catalog fails here.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Required, get_args

import pytest
from runwayml.types import image_to_video_create_params as sdk
from typing_extensions import is_typeddict

from vidgen_runway.catalog import (
    MAX_DURATION,
    MIN_DURATION,
    MODELS,
    PROMPT_MAX_UTF16,
    ModelName,
    RatioName,
    estimated_credits,
    typical_task_times,
    utf16_length,
)


def _literal_values(tp: Any) -> set[Any]:
    """Every value a Literal inside ``tp`` (through Annotated, Required, Union) allows."""
    if typing.get_origin(tp) is typing.Literal:
        return set(get_args(tp))
    values: set[Any] = set()
    for arg in get_args(tp):
        values |= _literal_values(arg)
    return values


def _sdk_params_by_model() -> dict[str, type]:
    """The SDK's params class of each model, found by its ``model`` Literal."""
    found: dict[str, type] = {}
    for _, cls in inspect.getmembers(sdk, inspect.isclass):
        if not is_typeddict(cls):
            continue
        hints = typing.get_type_hints(cls, include_extras=True)
        names = _literal_values(hints["model"]) if "model" in hints else set()
        if len(names) == 1:
            found[names.pop()] = cls
    return found


SDK_PARAMS = _sdk_params_by_model()


def _hints(name: str) -> dict[str, Any]:
    return typing.get_type_hints(SDK_PARAMS[name], include_extras=True)


def _typeddicts_in(tp: Any) -> list[type]:
    """The TypedDicts inside ``tp`` (through Required, Annotated, Union, Iterable)."""
    if is_typeddict(tp):
        return [tp]
    return [found for arg in get_args(tp) for found in _typeddicts_in(arg)]


def _image_item(name: str) -> type:
    """The TypedDict of one ``{uri, position}`` item of the model's ``prompt_image`` list."""
    items = _typeddicts_in(_hints(name)["prompt_image"])
    assert len(items) == 1, (name, items)
    return items[0]


def _required(name: str) -> set[str]:
    """The fields the SDK marks ``Required`` (its TypedDicts are ``total=False``)."""
    return {key for key, tp in _hints(name).items() if typing.get_origin(tp) is Required}


def test_the_sdk_offers_every_catalog_model() -> None:
    assert set(MODELS) <= set(SDK_PARAMS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ratios_and_durations_match_the_sdk(name: str) -> None:
    hints = _hints(name)
    assert set(MODELS[name].ratios) == _literal_values(hints["ratio"])
    durations = _literal_values(hints["duration"])
    if durations:  # a Literal in the SDK: exactly those
        assert set(MODELS[name].durations) == durations
    else:  # a plain int: the range Runway documents for its gen4 models
        assert MODELS[name].durations == tuple(range(2, 11))
        assert "Must be an integer from 2 to 10." in inspect.getsource(sdk.Gen4_5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_required_and_optional_fields_match_the_sdk(name: str) -> None:
    facts = MODELS[name]
    required = _required(name)
    assert {"model", "prompt_image"} <= required
    assert ("duration" in required) == (facts.runway_default_duration is None)
    assert ("prompt_text" in required) == facts.prompt_text_required
    assert "prompt_text" in _hints(name)
    assert ("audio" in _hints(name)) == facts.audio
    assert ("content_moderation" in _hints(name)) == facts.content_moderation
    if facts.runway_default_duration is not None:
        assert facts.runway_default_duration in facts.durations


@pytest.mark.parametrize("name", sorted(MODELS))
def test_image_positions_match_the_sdk(name: str) -> None:
    item = typing.get_type_hints(_image_item(name), include_extras=True)
    assert _literal_values(item["position"]) == set(MODELS[name].positions)


def test_prompt_limit_is_the_sdks() -> None:
    phrase = f"up to {PROMPT_MAX_UTF16} characters (measured in UTF-16 code units)"
    for name in MODELS:
        source = inspect.getsource(SDK_PARAMS[name])
        assert phrase in source, name
    assert utf16_length("a\U0001f600") == 3


def test_the_typed_names_are_the_table() -> None:
    assert set(get_args(ModelName)) == set(MODELS)
    assert set(get_args(RatioName)) == {r for m in MODELS.values() for r in m.ratios}
    assert (MIN_DURATION, MAX_DURATION) == (2, 10)


def test_prices_and_priors_cover_every_model() -> None:
    assert estimated_credits("veo3.1", 8) == 320  # with audio, as the simulator charges
    assert MODELS["veo3.1"].credits(8, audio=False) == 160
    assert MODELS["gen4_turbo"].credits(8, audio=False) == 40  # no audio option: one price
    assert typical_task_times() == {
        "gen4_turbo": 45.0,
        "gen4.5": 90.0,
        "veo3.1": 75.0,
        "veo3.1_fast": 40.0,
    }
