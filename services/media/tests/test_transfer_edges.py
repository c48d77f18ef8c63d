"""HttpTransfer's edge cases through httpx.MockTransport and an in-memory store (no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from vidgen_media.errors import DownloadFailed, VideoTooLarge
from vidgen_media.transfer import HttpTransfer, TransferPolicy

BODY = bytes(range(256)) * 1024  # 256 KiB
KEY = "videos/u/g.mp4"


def policy(**overrides: Any) -> TransferPolicy:
    return TransferPolicy(
        **{
            "max_bytes": 1 << 30,
            "retries": 3,
            "backoff_s": 0,
            "chunk_bytes": 64 * 1024,
            **overrides,
        }
    )


async def cut_after(data: bytes, n: int) -> AsyncIterator[bytes]:
    yield data[:n]
    raise httpx.ReadError("connection reset by peer")


def ranged(etag: str, cut_first_at: int | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A server honouring ``Range``; the first response is cut after ``cut_first_at`` bytes."""
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("range", ""))
        match = re.match(r"bytes=(\d+)-", request.headers.get("range", ""))
        start = int(match[1]) if match else 0
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Range": f"bytes {start}-{len(BODY) - 1}/{len(BODY)}",
            "Content-Length": str(len(BODY) - start),
        }
        body = BODY[start:]
        if len(calls) == 1 and cut_first_at is not None:
            return httpx.Response(206, headers=headers, content=cut_after(body, cut_first_at))
        return httpx.Response(206, headers=headers, content=body)

    handle.calls = calls  # type: ignore[attr-defined]
    return handle


async def test_a_weak_etag_still_allows_a_resume_but_is_not_sent_as_if_range(world) -> None:
    seen: list[httpx.Request] = []
    server = ranged('W/"v1"', cut_first_at=100_000)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return server(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        result = await HttpTransfer(client, world.storage, policy()).fetch(
            "http://o/0.mp4", KEY, world.spool_dir / "copy"
        )
    assert (result.resumes, result.restarts) == (1, 0)
    assert result.sha256 == hashlib.sha256(BODY).hexdigest()
    assert "if-range" not in seen[1].headers
    assert seen[1].headers["range"] == "bytes=100000-"


async def test_a_strong_etag_is_sent_as_if_range(world) -> None:
    seen: list[httpx.Request] = []
    server = ranged('"v1"', cut_first_at=100_000)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return server(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        await HttpTransfer(client, world.storage, policy()).fetch(
            "http://o/0.mp4", KEY, world.spool_dir / "copy"
        )
    assert seen[1].headers["if-range"] == '"v1"'


async def test_a_nonsense_content_range_fails_instead_of_restarting_forever(world) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10"}, content=b"56789")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(DownloadFailed, match="unusable Content-Range"):
            await HttpTransfer(client, world.storage, policy()).fetch(
                "http://o/0.mp4", KEY, world.spool_dir / "copy"
            )
    assert KEY not in world.storage.objects


async def test_a_server_that_always_cuts_and_never_resumes_runs_out_of_retries(world) -> None:
    requests = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(
            200, headers={"Content-Length": str(len(BODY))}, content=cut_after(BODY, 100_000)
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(DownloadFailed, match="gave up after 4 failed requests"):
            await HttpTransfer(client, world.storage, policy(retries=3)).fetch(
                "http://o/0.mp4", KEY, world.spool_dir / "copy"
            )
    assert requests == 4


async def test_the_cap_counts_bytes_across_resumes(world) -> None:
    server = ranged('"v1"', cut_first_at=100_000)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(VideoTooLarge):
            await HttpTransfer(client, world.storage, policy(max_bytes=len(BODY) - 1)).fetch(
                "http://o/0.mp4", KEY, world.spool_dir / "copy"
            )
