"""What Runway's ``image_to_video`` accepts and costs, per model: the one catalog.

The rules follow the ``runwayml`` SDK's ``types/image_to_video_create_params.py`` (5.24); a
test checks them against those types, so an SDK upgrade that changes one fails loudly. Prices
are Runway's published credits per second of output video (estimates: a task's own
``estimatedCost`` / ``cost`` is the truth). ``typical_task_s`` is how long a task of the model
usually takes end to end, the poller's prior until it has learned better.

Only image-to-video models that take a first-frame image, a fixed ratio and a prompt are
listed. Standard library only: reading the catalog never imports the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROMPT_MAX_UTF16 = 1000
SEED_MAX = 4_294_967_295

# The names as types (for request schemas); a test keeps them equal to MODELS.
ModelName = Literal["gen4_turbo", "gen4.5", "veo3.1", "veo3.1_fast"]
RatioName = Literal[
    "1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1080:1920", "1920:1080"
]

GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")


@dataclass(frozen=True)
class ModelFacts:
    """What ``POST /v1/image_to_video`` accepts for one model, what it costs, how long it takes."""

    name: str
    ratios: tuple[str, ...]
    durations: tuple[int, ...]
    runway_default_duration: int | None  # Runway's, when `duration` is left out; None: required
    credits_per_second: int
    typical_task_s: float
    prompt_text_required: bool = False
    positions: tuple[str, ...] = ("first",)
    content_moderation: bool = False  # accepts `contentModeration`
    audio: bool = False  # accepts `audio`
    credits_per_second_without_audio: int | None = None

    def credits(self, duration: int, audio: bool = True) -> int:
        """Credits charged for a video of ``duration`` seconds."""
        rate = self.credits_per_second
        if self.audio and not audio and self.credits_per_second_without_audio is not None:
            rate = self.credits_per_second_without_audio
        return rate * duration


MODELS: dict[str, ModelFacts] = {
    facts.name: facts
    for facts in (
        ModelFacts(
            name="gen4_turbo",
            ratios=GEN4_RATIOS,
            durations=tuple(range(2, 11)),
            runway_default_duration=10,
            credits_per_second=5,
            typical_task_s=45.0,
            content_moderation=True,
        ),
        ModelFacts(
            name="gen4.5",
            ratios=GEN4_RATIOS,
            durations=tuple(range(2, 11)),
            runway_default_duration=None,
            credits_per_second=12,
            typical_task_s=90.0,
            prompt_text_required=True,
            content_moderation=True,
        ),
        ModelFacts(
            name="veo3.1",
            ratios=VEO_RATIOS,
            durations=(4, 6, 8),
            runway_default_duration=8,
            credits_per_second=40,
            typical_task_s=75.0,
            positions=("first", "last"),
            audio=True,
            credits_per_second_without_audio=20,
        ),
        ModelFacts(
            name="veo3.1_fast",
            ratios=VEO_RATIOS,
            durations=(4, 6, 8),
            runway_default_duration=8,
            credits_per_second=15,
            typical_task_s=40.0,
            positions=("first", "last"),
            audio=True,
            credits_per_second_without_audio=10,
        ),
    )
}

MIN_DURATION = min(d for facts in MODELS.values() for d in facts.durations)
MAX_DURATION = max(d for facts in MODELS.values() for d in facts.durations)


def utf16_length(text: str) -> int:
    """Length as Runway measures prompts: in UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def estimated_credits(model: str, duration_s: int) -> int | None:
    """Runway's published price of a video (None for a model without a known price)."""
    facts = MODELS.get(model)
    return None if facts is None else facts.credits_per_second * duration_s


def typical_task_times() -> dict[str, float]:
    """``typical_task_s`` per model."""
    return {name: facts.typical_task_s for name, facts in MODELS.items()}
