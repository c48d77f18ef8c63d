"""The video check and the poster, on files made with PyAV (no network)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from vidgen_media.errors import InvalidVideo, StorageFailed
from vidgen_media.probe import probe_source


def write(tmp_path: Path, data: bytes, name: str = "v.mp4") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_real_mp4_passes_with_its_facts_and_a_poster(tmp_path, sample_mp4) -> None:
    probe = probe_source(write(tmp_path, sample_mp4))
    info = probe.info
    assert (info.codec, info.width, info.height) == ("h264", 320, 240)
    assert info.duration_seconds == pytest.approx(1.0, abs=0.05)
    assert info.content_type == "video/mp4"
    assert info.frames == 24
    poster = av.open(io.BytesIO(probe.poster_jpeg))
    frame = next(poster.decode(video=0))
    assert poster.streams.video[0].codec_context.name == "mjpeg"
    assert (frame.width, frame.height) == (320, 240)


def test_the_poster_is_scaled_down_to_the_maximum_width(tmp_path, make_video) -> None:
    data = make_video(width=1280, height=720, frames=3, noise=False)
    probe = probe_source(write(tmp_path, data), max_width=640)
    assert (probe.info.width, probe.info.height) == (1280, 720)
    frame = next(av.open(io.BytesIO(probe.poster_jpeg)).decode(video=0))
    assert (frame.width, frame.height) == (640, 360)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Access denied</body></html>",
        b"\x00" * 4096,
        bytes(range(256)) * 64,
    ],
    ids=["html", "zeros", "bytes"],
)
def test_bytes_that_are_no_video_are_rejected(tmp_path, body) -> None:
    with pytest.raises(InvalidVideo, match="not a media file"):
        probe_source(write(tmp_path, body))


def test_a_video_in_another_container_is_rejected(tmp_path, make_video) -> None:
    data = make_video(frames=3, fmt="matroska", noise=False)
    with pytest.raises(InvalidVideo, match="not MP4"):
        probe_source(write(tmp_path, data, "v.mkv"))


def test_an_mp4_without_video_is_rejected(tmp_path) -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.sample_rate = 48000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InvalidVideo, match="no video stream"):
        probe_source(write(tmp_path, buf.getvalue()))


def test_a_file_cut_short_is_rejected(tmp_path, make_video) -> None:
    """The index is up front (faststart), so the file opens, but frames are missing."""
    data = make_video(frames=24, faststart=True)
    assert data.index(b"moov") < data.index(b"mdat")
    with pytest.raises(InvalidVideo, match="of 24 video frames present"):
        probe_source(write(tmp_path, data[: len(data) * 2 // 3]))


def test_a_file_cut_before_its_index_is_rejected(tmp_path, sample_mp4) -> None:
    with pytest.raises(InvalidVideo):
        probe_source(write(tmp_path, sample_mp4[: len(sample_mp4) // 2]))


def test_an_unreachable_source_is_a_storage_failure_not_an_invalid_video() -> None:
    with pytest.raises(StorageFailed):
        probe_source("http://127.0.0.1:9/videos/u/g.mp4", timeout_s=2)
