"""Small helpers for tests of the simulator and of its clients: images, MP4 checks, waiting."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import av
from PIL import Image

T = TypeVar("T")


def png_bytes(width: int = 320, height: int = 240) -> bytes:
    """A gradient PNG (so the pan/zoom has something to show)."""
    img = Image.new("RGB", (width, height))
    img.putdata(
        [(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)]
    )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@dataclass
class VideoInfo:
    codec: str
    pix_fmt: str
    width: int
    height: int
    duration_s: float
    frames: int
    moov_before_mdat: bool


def inspect_mp4(data: bytes) -> VideoInfo:
    """Decode every frame with PyAV and report what a consumer would check."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = 0
        for _ in container.decode(stream):
            frames += 1
        assert container.duration is not None
        return VideoInfo(
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration_s=container.duration / av.time_base,
            frames=frames,
            moov_before_mdat=data.find(b"moov") < data.find(b"mdat"),
        )


def wait_until(check: Callable[[], T | None], timeout_s: float = 10.0, every_s: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {result!r})")
        time.sleep(every_s)


async def async_wait_until(
    check: Callable[[], Awaitable[T | None]], timeout_s: float = 10.0, every_s: float = 0.02
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {result!r})")
        await asyncio.sleep(every_s)
