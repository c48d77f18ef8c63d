"""``GET /api/models``: what ``POST /api/videos/generate`` accepts, per model, and its price.

Built from the same catalog the request is validated against, prices included
(:data:`vidgen_runway.catalog.MODELS`, through :mod:`vidgen_gateway.runway_models`), so a form
built from this answer never offers a combination the API refuses. No token needed: nothing
here depends on the caller.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import Field

from vidgen_gateway.runway_models import (
    DEFAULT_MODEL,
    DEFAULT_RATIO,
    MODELS,
    PROMPT_MAX_UTF16,
    default_duration,
)
from vidgen_gateway.schemas import ApiModel

router = APIRouter(prefix="/api", tags=["catalog"])


class ModelInfo(ApiModel):
    """One Runway model and the parameters it takes."""

    name: str = Field(examples=["gen4_turbo"])
    ratios: list[str] = Field(description="Output resolutions W:H", examples=[["1280:720"]])
    default_ratio: str = Field(description="Used when the request names none")
    durations: list[int] = Field(description="Seconds of video offered", examples=[[5, 10]])
    default_duration: int = Field(description="Used when the request names none")
    prompt_max_length: int = Field(description="Longest prompt, in UTF-16 code units")
    credits_per_second: int | None = Field(
        description="Runway's published price per second of video (an estimate; the task's "
        "own cost is the truth); null when unknown"
    )


class ModelCatalog(ApiModel):
    models: list[ModelInfo]
    default_model: str = Field(description="Used when the request names none")


def catalog() -> ModelCatalog:
    """The catalog, from the table requests are validated against (prices included)."""
    models = [
        ModelInfo(
            name=rule.name,
            ratios=list(rule.ratios),
            default_ratio=DEFAULT_RATIO if DEFAULT_RATIO in rule.ratios else rule.ratios[0],
            durations=list(rule.durations),
            default_duration=default_duration(rule),
            prompt_max_length=PROMPT_MAX_UTF16,
            credits_per_second=rule.credits_per_second,
        )
        for rule in MODELS.values()
    ]
    return ModelCatalog(models=models, default_model=DEFAULT_MODEL)


@router.get(
    "/models",
    response_model=ModelCatalog,
    summary="The models, ratios, durations and prompt limits accepted, with prices",
)
async def models(response: Response) -> ModelCatalog:
    response.headers["Cache-Control"] = "public, max-age=300"
    return catalog()
