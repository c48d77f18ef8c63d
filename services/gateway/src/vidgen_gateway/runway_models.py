"""What Runway's ``image_to_video`` accepts, per model, for the parameters the API exposes.

The table follows the ``runwayml`` SDK's ``types/image_to_video_create_params.py`` (5.24); a
unit test checks it against those types so an SDK upgrade that changes a rule fails loudly.
Only image-to-video models that take a single first-frame image, a fixed ratio and a prompt
are offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROMPT_MAX_UTF16 = 1000
SEED_MAX = 4_294_967_295

ModelName = Literal["gen4_turbo", "gen4.5", "veo3.1", "veo3.1_fast"]
RatioName = Literal[
    "1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672", "1080:1920", "1920:1080"
]

GEN4_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO_RATIOS = ("1280:720", "720:1280", "1080:1920", "1920:1080")

DEFAULT_MODEL = "gen4_turbo"
DEFAULT_RATIO = "1280:720"
DEFAULT_DURATION = 5


@dataclass(frozen=True)
class ModelRule:
    name: str
    ratios: tuple[str, ...]
    durations: tuple[int, ...]

    @property
    def default_duration(self) -> int:
        """5 s where the model allows it, else its shortest duration."""
        return DEFAULT_DURATION if DEFAULT_DURATION in self.durations else self.durations[0]


MODELS: dict[str, ModelRule] = {
    rule.name: rule
    for rule in (
        ModelRule("gen4_turbo", GEN4_RATIOS, tuple(range(2, 11))),
        ModelRule("gen4.5", GEN4_RATIOS, tuple(range(2, 11))),
        ModelRule("veo3.1", VEO_RATIOS, (4, 6, 8)),
        ModelRule("veo3.1_fast", VEO_RATIOS, (4, 6, 8)),
    )
}


MIN_DURATION = min(d for rule in MODELS.values() for d in rule.durations)
MAX_DURATION = max(d for rule in MODELS.values() for d in rule.durations)


def utf16_length(text: str) -> int:
    """Length as Runway measures prompts: in UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def problems(model: str, ratio: str, duration: int) -> list[dict[str, object]]:
    """Why Runway would refuse this combination (empty when it accepts it)."""
    rule = MODELS.get(model)
    if rule is None:
        return [{"field": "model", "message": "unknown model", "allowed": sorted(MODELS)}]
    found: list[dict[str, object]] = []
    if ratio not in rule.ratios:
        found.append(
            {"field": "ratio", "message": f"not offered by {model}", "allowed": list(rule.ratios)}
        )
    if duration not in rule.durations:
        found.append(
            {
                "field": "duration",
                "message": f"not offered by {model}",
                "allowed": list(rule.durations),
            }
        )
    return found
