"""Real MP4 outputs: a slow pan and zoom over the prompt image (H.264, yuv420p, faststart).

`render_mp4` is a pure, picklable function (it runs in a thread or process pool). `Renderer`
schedules renders off the event loop as soon as a task's image is known and caches them by
(image hash, ratio, duration), so a download awaits at most the rest of one render.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from fractions import Fraction
from multiprocessing import get_context
from typing import Literal

import av
from PIL import Image

ZOOM = 0.15  # the crop shrinks by this fraction over the clip
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


def ratio_size(ratio: str, height: int) -> tuple[int, int]:
    """Output frame size for `ratio` ("W:H") at `height` pixels, both sides even."""
    w, h = (int(part) for part in ratio.split(":"))
    out_h = max(2, height - height % 2)
    out_w = max(2, round(out_h * w / h / 2) * 2)
    return out_w, out_h


def probe_image(data: bytes, max_pixels: int = 8192 * 8192) -> tuple[int, int]:
    """(width, height) of a JPEG/PNG/WebP image that fully decodes; ValueError otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in IMAGE_FORMATS:
                raise ValueError(f"unsupported image format {img.format}")
            if img.width * img.height > max_pixels:
                raise ValueError("image has too many pixels")
            img.load()
            return img.width, img.height
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"not a decodable image: {exc}") from exc


def _source(data: bytes, width: int, height: int) -> Image.Image:
    """The image centre-cropped to width:height and scaled to 1.5x the output size."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (width * 2, height * 2))
        rgb = img.convert("RGB")
    target = width / height
    w, h = rgb.size
    if w / h > target:
        crop_w = h * target
        box = ((w - crop_w) / 2, 0.0, (w + crop_w) / 2, float(h))
    else:
        crop_h = w / target
        box = (0.0, (h - crop_h) / 2, float(w), (h + crop_h) / 2)
    size = (round(width * 1.5), round(height * 1.5))
    return rgb.resize(size, Image.Resampling.BILINEAR, box=box)


def render_mp4(data: bytes, width: int, height: int, duration_s: int, fps: int) -> bytes:
    """An MP4 of exactly `duration_s * fps` frames slowly zooming into and panning the image."""
    src = _source(data, width, height)
    sw, sh = src.size
    frames = max(1, duration_s * fps)
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="runway-sim-")
    os.close(fd)
    try:
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(
                "libx264", rate=fps, options={"preset": "veryfast", "crf": "28"}
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                t = i / max(1, frames - 1)
                scale = 1.0 - ZOOM * t
                cw, ch = sw * scale, sh * scale
                x0, y0 = (sw - cw) * t, (sh - ch) * (0.5 + 0.5 * t) / 2
                frame_img = src.resize(
                    (width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)
                )
                frame = av.VideoFrame.from_image(frame_img)  # type: ignore[no-untyped-call]
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


RenderKey = tuple[str, int, int, int, int]  # image hash, width, height, duration, fps


class Renderer:
    """A bounded cache of render futures, fed by a thread or process pool."""

    def __init__(self, workers: int, kind: Literal["thread", "process"], cache_size: int) -> None:
        self._executor: Executor
        if kind == "process":
            self._executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        else:
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="runway-sim-render")
        self._cache: OrderedDict[RenderKey, Future[bytes]] = OrderedDict()
        self._cache_size = cache_size
        self.renders_started = 0

    def submit(self, key: RenderKey, data: bytes) -> Future[bytes]:
        """The render for `key`, started now unless cached (callers keep the future)."""
        future = self._cache.get(key)
        if future is not None and not (future.done() and future.exception() is not None):
            self._cache.move_to_end(key)
            return future
        _, width, height, duration, fps = key
        future = self._executor.submit(render_mp4, data, width, height, duration, fps)
        self.renders_started += 1
        self._cache[key] = future
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return future

    @staticmethod
    async def result(future: Future[bytes]) -> bytes:
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
