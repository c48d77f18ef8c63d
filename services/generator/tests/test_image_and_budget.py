"""The prompt image's form and the concurrency budget (no I/O)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from vidgen_generator.budget import Budget
from vidgen_generator.errors import ImageUnavailable
from vidgen_generator.image import PromptImages, data_uri, data_uri_length, upload_filename
from vidgen_generator.settings import GeneratorSettings

FakeRunway = Any
FakeStorage = Any


def test_data_uri_length_is_exact() -> None:
    for size in (0, 1, 2, 3, 100, 3001):
        assert data_uri_length(size, "image/png") == len(data_uri(b"x" * size, "image/png"))


def test_upload_filenames() -> None:
    assert upload_filename("images/u1/a.png", "image/png") == "a.png"
    assert upload_filename("images/u1/blob", "image/jpeg") == "blob.jpg"


async def test_small_images_go_inline_and_large_ones_are_uploaded(
    fake_runway: FakeRunway, fake_storage: FakeStorage
) -> None:
    fake_storage.objects["k/small.png"] = b"s" * 30
    fake_storage.objects["k/big.png"] = b"b" * 31
    limit = data_uri_length(30, "image/png")
    images = PromptImages(fake_storage, fake_runway, data_uri_max_bytes=limit)
    small = await images.prompt_image("k/small.png", "image/png")
    assert base64.b64decode(small.split(",", 1)[1]) == b"s" * 30
    assert await images.prompt_image("k/big.png", "image/png") == "runway://upload-1"


async def test_a_public_store_is_referenced_by_url(
    fake_runway: FakeRunway, fake_storage: FakeStorage
) -> None:
    fake_storage.objects["k/a.png"] = b"a"
    images = PromptImages(
        fake_storage, fake_runway, data_uri_max_bytes=10**6, store_publicly_reachable=True
    )
    assert (
        await images.prompt_image("k/a.png", "image/png") == "https://store.example/k/a.png?signed"
    )
    with pytest.raises(ImageUnavailable) as info:
        await images.prompt_image("k/missing.png", "image/png")
    assert info.value.permanent


async def test_budget_precedence(fake_runway: FakeRunway) -> None:
    settings = GeneratorSettings(
        model_budgets={"gen4_turbo": 2}, default_budget=5, budget_from_organization=True
    )
    fake_runway.limits = {"gen4_turbo": 9, "gen4.5": 1, "veo3.1": None}
    budget = Budget(settings, fake_runway)
    await budget.refresh()
    assert budget.limit("gen4_turbo") == 2  # the setting wins
    assert budget.limit("gen4.5") == 1  # then the organisation
    assert budget.limit("veo3.1") is None  # the organisation says: no limit
    assert budget.limit("other") == 5  # then the default
    assert budget.full_models({"gen4_turbo": 2, "gen4.5": 0, "veo3.1": 100}) == ["gen4_turbo"]
    assert not budget.has_room("gen4.5", {"gen4.5": 1})
