"""Is the stored file a real, playable video? PyAV (FFmpeg) reads it and makes a poster.

:func:`probe_source` (blocking; run it in a thread) opens a path or URL and checks: an
MP4/QuickTime container; a video stream whose codec is a real video codec; duration > 0;
width and height > 0; every packet of the video stream demuxes (as many as the container
announces, so a file cut short is caught) and a frame decodes. The poster is the frame about
10 % in (at most 1 s), scaled to at most ``max_width`` wide, encoded as JPEG by FFmpeg's mjpeg
encoder. A file that fails a check raises :class:`InvalidVideo`; failing to read it at all
(network, store) raises :class:`StorageFailed`, which is worth retrying. The service probes a
local copy of the bytes it stored (:class:`AvProber`), so a network error never reaches the
verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vidgen_media.errors import InvalidVideo, SpoolFailed, StorageFailed

VIDEO_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "prores"})
_CONTAINERS = frozenset({"mp4", "mov"})
_POSTER_AT_S = 1.0
_POSTER_MAX_FRAMES = 240


@dataclass(frozen=True)
class VideoInfo:
    content_type: str
    codec: str
    duration_seconds: float
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Probe:
    info: VideoInfo
    poster_jpeg: bytes


def probe_source(source: str, *, timeout_s: float = 30.0, max_width: int = 640) -> Probe:
    """Check ``source`` (a path or URL) and make its poster; blocking."""
    try:
        container = av.open(source, timeout=(timeout_s, timeout_s))
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise InvalidVideo(f"not a media file FFmpeg can read: {exc}") from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise StorageFailed(f"could not read the stored video: {exc}") from exc
    with container:
        names = set(container.format.name.split(","))
        if not names & _CONTAINERS:
            raise InvalidVideo(f"container {container.format.name} is not MP4/QuickTime")
        if not container.streams.video:
            raise InvalidVideo("no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in VIDEO_CODECS:
            raise InvalidVideo(f"video codec {codec} is not one we accept")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise InvalidVideo(f"dimensions {width}x{height}")
        duration = _duration(container, stream)
        if duration <= 0:
            raise InvalidVideo("duration is zero")
        poster, packets = _scan(container, stream, min(duration / 10, _POSTER_AT_S))
        if stream.frames and packets != stream.frames:
            raise InvalidVideo(f"{packets} of {stream.frames} video frames present: cut short?")
        brand = str(container.metadata.get("major_brand", "")).strip()
        info = VideoInfo(
            content_type="video/quicktime" if brand == "qt" else "video/mp4",
            codec=codec,
            duration_seconds=round(duration, 3),
            width=width,
            height=height,
            frames=packets,
        )
    return Probe(info, _jpeg(poster, max_width))


def _duration(container: Any, stream: Any) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration / av.time_base)
    return 0.0


def _scan(container: Any, stream: Any, poster_at: float) -> tuple[Any, int]:
    """Demux every packet of ``stream``, decoding until the poster frame; (poster, packets)."""
    poster = None
    packets = 0
    decoding = True
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                if decoding:
                    poster = _last_frame(stream.codec_context.decode(packet), poster)
                continue
            packets += 1
            if not decoding:
                continue
            for frame in stream.codec_context.decode(packet):
                poster = frame
                if (frame.time or 0.0) >= poster_at or packets > _POSTER_MAX_FRAMES:
                    decoding = False
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidVideo(f"the video does not decode: {exc}") from exc
    if poster is None:
        raise InvalidVideo("no frame decodes")
    return poster, packets


def _last_frame(frames: Any, current: Any) -> Any:
    for frame in frames:
        current = frame
    return current


def _jpeg(frame: Any, max_width: int) -> bytes:
    width = min(max_width, frame.width)
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    width -= width % 2
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    packets = [*encoder.encode(image), *encoder.encode(None)]
    if not packets:
        raise InvalidVideo("the poster frame could not be encoded")
    return bytes(packets[0])


class AvProber:
    """Probes the local copy of a video in a worker thread (a
    :class:`~vidgen_media.pipeline.VideoProber`).

    The file is on local disk, so a failure to read it is not the network: FFmpeg's verdict
    on its content is the video's. Failing to open the file at all is :class:`SpoolFailed`.
    """

    def __init__(self, *, timeout_s: float, max_width: int) -> None:
        self._timeout_s = timeout_s
        self._max_width = max_width

    async def probe(self, path: Path) -> Probe:
        if not await asyncio.to_thread(path.is_file):
            raise SpoolFailed(f"the local copy {path} is missing")
        try:
            return await asyncio.to_thread(
                probe_source, str(path), timeout_s=self._timeout_s, max_width=self._max_width
            )
        except StorageFailed as exc:  # FFmpeg could not read a local file: our disk
            raise SpoolFailed(str(exc)) from exc
