"""Sample events of one generation, valid and plausible, for tests and benchmarks that feed a
consumer without the services upstream of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vidgen_common.events import GenerationCompleted, GenerationRequested


def requested(gid: str, user: str, **fields: Any) -> GenerationRequested:
    """A ``GenerationRequested`` of ``user`` for a 5 s gen4_turbo video; ``fields`` override."""
    return GenerationRequested(
        generation_id=gid,
        project_id="p-" + gid,
        user_id=user,
        image_key=f"images/{user}/x.png",
        image_content_type="image/png",
        prompt="a lake",
        model="gen4_turbo",
        ratio="1280:720",
        duration=5,
        requested_at=datetime.now(UTC),
        **fields,
    )


def completed(gid: str, user: str) -> GenerationCompleted:
    """The ``GenerationCompleted`` that ends :func:`requested`'s generation."""
    return GenerationCompleted(
        generation_id=gid,
        user_id=user,
        video_key=f"videos/{user}/{gid}.mp4",
        thumbnail_key=f"videos/{user}/{gid}.jpg",
        size_bytes=1000,
        sha256="0" * 64,
        duration_seconds=5.0,
        width=1280,
        height=720,
        codec="h264",
        cost_credits=25,
        completed_at=datetime.now(UTC),
    )
