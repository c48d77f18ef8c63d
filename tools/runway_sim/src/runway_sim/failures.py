"""Task failure codes (Runway's task-failures families) and when in a task's life they strike.

`start` failures end the task when it would begin RUNNING (input moderation, input
preprocessing); `end` failures end it when it would have finished (output moderation, quality
rejection, internal errors). Failed tasks are refunded (`cost.credits` 0).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

Phase = Literal["start", "end"]


@dataclass(frozen=True)
class FailurePlan:
    code: str
    message: str
    phase: Phase


KNOWN_FAILURES: dict[str, tuple[Phase, str]] = {
    "SAFETY.INPUT.TEXT": ("start", "The prompt text did not pass content moderation."),
    "SAFETY.INPUT.IMAGE": ("start", "The input image did not pass content moderation."),
    "SAFETY.OUTPUT.VIDEO": ("end", "The generated video did not pass content moderation."),
    "INPUT_PREPROCESSING.SAFETY.TEXT": ("start", "The prompt text was flagged while preparing it."),
    "INPUT_PREPROCESSING.INTERNAL": ("start", "The inputs could not be prepared for generation."),
    "ASSET.INVALID": ("start", "The input asset could not be used."),
    "INTERNAL.BAD_OUTPUT.CODE01": (
        "end",
        "The output did not meet our quality standards. Trying again may succeed.",
    ),
    "INTERNAL": ("end", "An unexpected error occurred while generating."),
}

_CODE = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


def is_valid_code(code: str) -> bool:
    return bool(_CODE.match(code))


def plan_for(code: str, message: str | None = None) -> FailurePlan:
    phase, default_message = KNOWN_FAILURES.get(code, ("end", f"The task failed ({code})."))
    return FailurePlan(code, message or default_message, phase)


def moderation_hit(prompt_text: str | None, words: list[str]) -> str | None:
    """The first listed word present in the prompt (whole word, case-insensitive)."""
    if not prompt_text:
        return None
    for word in words:
        if word and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", prompt_text, re.IGNORECASE):
            return word
    return None


def draw_failure(rates: dict[str, float], rng: random.Random) -> FailurePlan | None:
    """One roll against the failure rates (codes in sorted order, probabilities add up)."""
    roll = rng.random()
    edge = 0.0
    for code in sorted(rates):
        edge += rates[code]
        if roll < edge:
            return plan_for(code)
    return None
