"""Output URLs: signing and expiry, Range and HEAD, download faults, padding."""

from __future__ import annotations

import av
import httpx
import pytest
from runwayml import RunwayML

from runway_sim.testing import SimHandle
from runway_sim.testkit import inspect_mp4, wait_until


def _succeeded(client: RunwayML, image_uri: str, duration: int = 2) -> str:
    task = client.image_to_video.create(
        model="gen4_turbo", prompt_image=image_uri, ratio="1280:720", duration=duration
    )
    return task.wait_for_task_output(timeout=30).id


def test_output_urls_expire_and_retrieve_gives_fresh_ones(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    sim.set_scenario({"output_url_ttl_s": 0.5})
    task_id = _succeeded(client, image_uri)
    url = client.tasks.retrieve(task_id).output[0]
    assert httpx.get(url, timeout=30).status_code == 200

    expired = wait_until(lambda: (r := httpx.get(url)).status_code == 403 and r, timeout_s=5)
    assert expired.headers["content-type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in expired.text
    assert "Request has expired" in expired.text

    fresh = client.tasks.retrieve(task_id).output[0]
    assert fresh != url
    assert httpx.get(fresh, timeout=30).status_code == 200


def test_tampered_url_is_forbidden(client: RunwayML, image_uri: str) -> None:
    url = client.tasks.retrieve(_succeeded(client, image_uri)).output[0]
    response = httpx.get(url.replace("Expires=", "Expires=9"))
    assert response.status_code == 403
    assert "SignatureDoesNotMatch" in response.text


def test_range_and_head(client: RunwayML, image_uri: str) -> None:
    url = client.tasks.retrieve(_succeeded(client, image_uri)).output[0]
    full = httpx.get(url, timeout=30)
    size = len(full.content)

    head = httpx.head(url)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == size
    assert head.headers["accept-ranges"] == "bytes"
    assert head.content == b""

    part = httpx.get(url, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{size}"
    assert part.content == full.content[100:300]

    tail = httpx.get(url, headers={"Range": "bytes=-50"})
    assert tail.content == full.content[-50:]
    resume = httpx.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert resume.content == full.content[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416


def test_padding_keeps_a_valid_mp4(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    task_id = _succeeded(client, image_uri)
    plain = httpx.get(client.tasks.retrieve(task_id).output[0], timeout=30).content
    sim.set_scenario({"output_pad_bytes": 200_000})
    padded = httpx.get(client.tasks.retrieve(task_id).output[0], timeout=30).content
    assert len(padded) == len(plain) + 200_000
    assert padded.startswith(plain)
    assert inspect_mp4(padded).frames == inspect_mp4(plain).frames


def test_truncated_download(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    url = client.tasks.retrieve(_succeeded(client, image_uri)).output[0]
    sim.set_scenario({"download_faults": {"next_n": 1, "mode": "truncate", "after_bytes": 500}})
    short = httpx.get(url, timeout=30)
    assert short.status_code == 200
    assert len(short.content) == 500
    with pytest.raises(av.error.FFmpegError):
        inspect_mp4(short.content)
    assert len(httpx.get(url, timeout=30).content) > 500  # only the next N downloads


def test_connection_reset_mid_download(sim: SimHandle, client: RunwayML, image_uri: str) -> None:
    url = client.tasks.retrieve(_succeeded(client, image_uri, duration=4)).output[0]
    sim.set_scenario({"download_faults": {"next_n": 1, "mode": "reset", "after_bytes": 4096}})
    received = bytearray()

    def download() -> None:
        with httpx.stream("GET", url, timeout=30) as response:
            for chunk in response.iter_bytes():
                received.extend(chunk)

    with pytest.raises(httpx.RemoteProtocolError):
        download()
    assert len(received) == 4096
    assert sim.counters()["faults"]["download_reset"] == 1
    assert httpx.get(url, timeout=30).status_code == 200


def test_output_of_unknown_or_failed_task_is_not_found(
    sim: SimHandle, client: RunwayML, image_uri: str
) -> None:
    url = client.tasks.retrieve(_succeeded(client, image_uri)).output[0]
    task_id = url.split("/_outputs/")[1].split("/")[0]
    client.tasks.delete(task_id)
    response = httpx.get(url)
    assert response.status_code == 404
    assert "NoSuchKey" in response.text
