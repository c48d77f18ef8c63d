"""The image-to-video models the simulator knows, with the rules Runway applies to each.

Ratios, durations and required fields follow `runwayml` 5.24's
`types/image_to_video_create_params.py`; prices are Runway's published credits per second
of output video (gen4_turbo 5, gen4.5 12, veo3.1 40 with audio / 20 without, veo3.1_fast
15 / 10).
"""

from __future__ import annotations

from dataclasses import dataclass

GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")
PROMPT_TEXT_MAX_UTF16 = 1000


@dataclass(frozen=True)
class ModelSpec:
    """What `POST /v1/image_to_video` accepts for one model and what it costs."""

    name: str
    ratios: tuple[str, ...]
    durations: tuple[int, ...]
    default_duration: int | None  # None: `duration` is required
    credits_per_second: int
    prompt_text_required: bool = False
    positions: tuple[str, ...] = ("first",)
    content_moderation: bool = False
    audio: bool = False  # accepts `audio` (and `negativePrompt`)
    credits_per_second_without_audio: int | None = None

    def credits(self, duration: int, audio: bool = True) -> int:
        """Credits charged for a video of `duration` seconds."""
        rate = self.credits_per_second
        if self.audio and not audio and self.credits_per_second_without_audio is not None:
            rate = self.credits_per_second_without_audio
        return rate * duration


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gen4_turbo",
            ratios=GEN4_RATIOS,
            durations=tuple(range(2, 11)),
            default_duration=10,
            credits_per_second=5,
            content_moderation=True,
        ),
        ModelSpec(
            name="gen4.5",
            ratios=GEN4_RATIOS,
            durations=tuple(range(2, 11)),
            default_duration=None,
            credits_per_second=12,
            prompt_text_required=True,
            content_moderation=True,
        ),
        ModelSpec(
            name="veo3.1",
            ratios=VEO_RATIOS,
            durations=(4, 6, 8),
            default_duration=8,
            credits_per_second=40,
            positions=("first", "last"),
            audio=True,
            credits_per_second_without_audio=20,
        ),
        ModelSpec(
            name="veo3.1_fast",
            ratios=VEO_RATIOS,
            durations=(4, 6, 8),
            default_duration=8,
            credits_per_second=15,
            positions=("first", "last"),
            audio=True,
            credits_per_second_without_audio=10,
        ),
    )
}


def ratio_size(ratio: str, height: int) -> tuple[int, int]:
    """Output frame size for `ratio` ("W:H") at `height` pixels, both sides even."""
    w, h = (int(part) for part in ratio.split(":"))
    out_h = max(2, height - height % 2)
    out_w = max(2, round(out_h * w / h / 2) * 2)
    return out_w, out_h
