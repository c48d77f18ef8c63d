"""End to end through the official SDK: upload or data URI → task → real MP4 download."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from runwayml import AsyncRunwayML, RunwayML

from runway_sim.testing import SimHandle
from runway_sim.testkit import data_uri, inspect_mp4, png_bytes


def _check_video(data: bytes, duration: int, ratio: str) -> None:
    info = inspect_mp4(data)
    w, h = (int(x) for x in ratio.split(":"))
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.moov_before_mdat, "faststart: moov must precede mdat"
    assert abs(info.duration_s - duration) <= 0.2
    assert abs(info.width / info.height - w / h) < 0.02
    assert info.height == 240


def test_ephemeral_upload_then_generate_and_download(
    client: RunwayML, sim: SimHandle, image: bytes
) -> None:
    upload = client.uploads.create_ephemeral(file=("frame.png", image))
    assert upload.uri.startswith("runway://")

    task = client.image_to_video.create(
        model="gen4_turbo",
        prompt_image=upload.uri,
        prompt_text="a slow push in on a gradient",
        ratio="1280:720",
        duration=3,
        seed=42,
    )
    done = task.wait_for_task_output(timeout=30)

    assert done.status == "SUCCEEDED"
    assert done.cost.credits == 15  # gen4_turbo: 5 credits per second
    assert len(done.output) == 1
    response = httpx.get(done.output[0], timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    _check_video(response.content, duration=3, ratio="1280:720")
    counters = sim.counters()
    assert counters["creates_accepted"] == 1
    assert counters["uploads_completed"] == 1
    assert counters["final_statuses"] == {"SUCCEEDED": 1}


async def test_data_uri_generation_async_client(aclient: AsyncRunwayML, image_uri: str) -> None:
    task = await aclient.image_to_video.create(
        model="veo3.1",
        prompt_image=[{"uri": image_uri, "position": "first"}],
        prompt_text="the camera drifts upward",
        ratio="720:1280",
        duration=4,
    )
    done = await task.wait_for_task_output(timeout=30)

    assert done.status == "SUCCEEDED"
    assert done.cost.credits == 160  # veo3.1 with audio: 40 credits per second
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(done.output[0])
    _check_video(response.content, duration=4, ratio="720:1280")


@pytest.mark.parametrize(
    ("model", "ratio", "duration"),
    [("gen4.5", "1584:672", 2), ("veo3.1_fast", "1920:1080", 6), ("gen4_turbo", "960:960", 5)],
)
def test_models_ratios_and_durations(
    client: RunwayML, image_uri: str, model: str, ratio: str, duration: int
) -> None:
    task = client.image_to_video.create(
        model=model,
        prompt_image=image_uri,
        prompt_text="waves",
        ratio=ratio,
        duration=duration,
    )
    done = task.wait_for_task_output(timeout=30)
    assert done.status == "SUCCEEDED"
    _check_video(httpx.get(done.output[0], timeout=30).content, duration, ratio)


def test_prompt_image_fetched_from_url(client: RunwayML, image: bytes) -> None:
    """A real HTTP fetch: the prompt image is served by a throwaway local server."""

    class ImageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/frame.png"
            task = client.image_to_video.create(
                model="gen4_turbo", prompt_image=url, ratio="832:1104", duration=2
            )
            done = task.wait_for_task_output(timeout=30)
        finally:
            server.shutdown()
            thread.join()
    assert done.status == "SUCCEEDED"
    _check_video(httpx.get(done.output[0], timeout=30).content, 2, "832:1104")


def test_renders_are_cached_by_image_ratio_and_duration(client: RunwayML) -> None:
    uri = data_uri(png_bytes(200, 200))
    outputs = []
    for _ in range(2):
        task = client.image_to_video.create(
            model="gen4_turbo", prompt_image=uri, ratio="1280:720", duration=2
        )
        outputs.append(task.wait_for_task_output(timeout=30).output[0])
    first, second = (httpx.get(url, timeout=30) for url in outputs)
    assert first.headers["etag"] == second.headers["etag"]
    assert first.content == second.content
