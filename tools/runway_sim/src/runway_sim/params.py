"""Validation of `POST /v1/image_to_video` bodies, per model (`vidgen_runway.catalog.MODELS`).

Everything checkable without fetching anything is checked here and answered with 400 and
Runway's error body; whether an image actually decodes is found out while the task runs
(`ASSET.INVALID`), as at Runway.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from runway_sim.errors import ApiError, issue, validation_error
from vidgen_runway.catalog import MODELS, PROMPT_MAX_UTF16, SEED_MAX, ModelFacts

SUPPORTED_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_URL_LENGTH = 2048
_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S
)


@dataclass(frozen=True)
class ImageRef:
    """One prompt image: where it comes from and, for data URIs, its bytes."""

    uri: str
    position: str
    kind: Literal["data", "url", "upload"]
    data: bytes | None = None


@dataclass(frozen=True)
class CreateRequest:
    spec: ModelFacts
    images: tuple[ImageRef, ...]
    ratio: str
    duration: int
    prompt_text: str | None
    seed: int | None
    audio: bool

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def first_image(self) -> ImageRef:
        return next(image for image in self.images if image.position == "first")

    @property
    def credits(self) -> int:
        return self.spec.credits(self.duration, self.audio)


def _enum_message(options: tuple[str, ...], received: object) -> str:
    expected = " | ".join(f"'{option}'" for option in options)
    return f"Invalid enum value. Expected {expected}, received '{received}'"


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_image_uri(
    uri: object, path: list[str | int], *, max_data_uri_bytes: int, allow_http: bool
) -> tuple[ImageRef | None, list[dict[str, Any]]]:
    """Classify and syntax-check one image URI (position filled in by the caller)."""
    if not isinstance(uri, str) or not uri:
        return None, [issue(path, "Expected a non-empty string", "invalid_type")]
    if uri.startswith("data:"):
        if len(uri) > max_data_uri_bytes:
            return None, [issue(path, "Data URI is larger than 5MB.", "too_big")]
        match = _DATA_URI.match(uri)
        if match is None:
            return None, [issue(path, "Invalid data URI.")]
        if match["mime"].lower() not in SUPPORTED_IMAGE_TYPES:
            return None, [issue(path, "Unsupported asset type.")]
        try:
            data = base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            return None, [issue(path, "Invalid data URI.")]
        return ImageRef(uri, "first", "data", data), []
    if uri.startswith("runway://"):
        if len(uri) <= len("runway://"):
            return None, [issue(path, "Invalid upload URI.")]
        return ImageRef(uri, "first", "upload"), []
    parts = urlsplit(uri)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return None, [issue(path, "Only HTTPS URLs are allowed.")]
    if len(uri) > MAX_URL_LENGTH or not parts.hostname:
        return None, [issue(path, "Invalid URL")]
    return ImageRef(uri, "first", "url"), []


def _prompt_images(
    value: object, spec: ModelFacts, *, max_data_uri_bytes: int, allow_http: bool
) -> tuple[tuple[ImageRef, ...], list[dict[str, Any]]]:
    if isinstance(value, str):
        ref, uri_problems = parse_image_uri(
            value, ["promptImage"], max_data_uri_bytes=max_data_uri_bytes, allow_http=allow_http
        )
        return ((ref,) if ref else ()), uri_problems
    if not isinstance(value, list) or not value:
        return (), [
            issue(["promptImage"], "Expected a string or a non-empty array", "invalid_type")
        ]
    if len(value) > len(spec.positions):
        return (), [issue(["promptImage"], f"At most {len(spec.positions)} images", "too_big")]
    refs: list[ImageRef] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        path: list[str | int] = ["promptImage", index]
        if not isinstance(item, dict):
            problems.append(issue(path, "Expected an object", "invalid_type"))
            continue
        position = item.get("position")
        if position not in spec.positions:
            problems.append(
                issue(
                    [*path, "position"],
                    _enum_message(spec.positions, position),
                    "invalid_enum_value",
                )
            )
            continue
        ref, uri_problems = parse_image_uri(
            item.get("uri"),
            [*path, "uri"],
            max_data_uri_bytes=max_data_uri_bytes,
            allow_http=allow_http,
        )
        problems += uri_problems
        if ref is not None:
            refs.append(ImageRef(ref.uri, str(position), ref.kind, ref.data))
    positions = [ref.position for ref in refs]
    if not problems and len(set(positions)) != len(positions):
        problems.append(issue(["promptImage"], "Each position may be given only once"))
    if not problems and "first" not in positions:
        problems.append(issue(["promptImage"], "A first frame is required"))
    return tuple(refs), problems


def validate_create(body: object, *, max_data_uri_bytes: int, allow_http: bool) -> CreateRequest:
    """A checked request, or `ApiError(400)` listing every problem found."""
    if not isinstance(body, dict):
        raise validation_error([issue([], "Expected an object", "invalid_type")])
    model = body.get("model")
    spec = MODELS.get(model) if isinstance(model, str) else None
    if spec is None:
        message = _enum_message(tuple(MODELS), model).replace("enum", "discriminator")
        if model is None:
            message = "Required"
        raise validation_error([issue(["model"], message, "invalid_union_discriminator")])

    problems: list[dict[str, Any]] = []
    images: tuple[ImageRef, ...] = ()
    if "promptImage" not in body:
        problems.append(issue(["promptImage"], "Required", "invalid_type"))
    else:
        images, image_problems = _prompt_images(
            body["promptImage"], spec, max_data_uri_bytes=max_data_uri_bytes, allow_http=allow_http
        )
        problems += image_problems

    ratio = body.get("ratio")
    if ratio not in spec.ratios:
        message = "Required" if ratio is None else _enum_message(spec.ratios, ratio)
        problems.append(issue(["ratio"], message, "invalid_enum_value"))

    duration = body.get("duration", spec.runway_default_duration)
    if duration is None:
        problems.append(issue(["duration"], "Required", "invalid_type"))
    elif (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or duration not in spec.durations
    ):
        allowed = ", ".join(str(d) for d in spec.durations)
        problems.append(issue(["duration"], f"Expected one of {allowed}, received {duration!r}"))

    prompt_text = body.get("promptText")
    if prompt_text is None:
        if spec.prompt_text_required:
            problems.append(issue(["promptText"], "Required", "invalid_type"))
    elif not isinstance(prompt_text, str) or not prompt_text.strip():
        problems.append(issue(["promptText"], "Expected a non-empty string", "invalid_type"))
    elif utf16_length(prompt_text) > PROMPT_MAX_UTF16:
        problems.append(
            issue(
                ["promptText"],
                f"String must contain at most {PROMPT_MAX_UTF16} character(s)",
                "too_big",
            )
        )

    seed = body.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX
    ):
        problems.append(issue(["seed"], f"Expected an integer from 0 to {SEED_MAX}"))

    moderation = body.get("contentModeration")
    if spec.content_moderation and moderation is not None:
        threshold = moderation.get("publicFigureThreshold") if isinstance(moderation, dict) else 0
        if not isinstance(moderation, dict) or threshold not in (None, "auto", "low"):
            problems.append(
                issue(
                    ["contentModeration", "publicFigureThreshold"],
                    _enum_message(("auto", "low"), threshold),
                    "invalid_enum_value",
                )
            )

    audio = body.get("audio", True)
    if spec.audio and not isinstance(audio, bool):
        problems.append(issue(["audio"], "Expected boolean", "invalid_type"))
    if spec.audio and not isinstance(body.get("negativePrompt", ""), str):
        problems.append(issue(["negativePrompt"], "Expected string", "invalid_type"))

    if problems:
        raise validation_error(problems)
    assert isinstance(ratio, str)
    assert isinstance(duration, int)
    return CreateRequest(
        spec=spec,
        images=images,
        ratio=ratio,
        duration=duration,
        prompt_text=prompt_text if isinstance(prompt_text, str) else None,
        seed=seed if isinstance(seed, int) else None,
        audio=bool(audio) if spec.audio else True,
    )


def insufficient_credits() -> ApiError:
    return ApiError(400, "You do not have enough credits to run this task.")
