"""HttpTransfer against a local HTTP server with faults, into a real S3 (nanio)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from vidgen_common.settings import S3Settings
from vidgen_common.storage import MinioStorage
from vidgen_media.errors import (
    DownloadFailed,
    InvalidVideo,
    StorageFailed,
    TransientDownloadError,
    UrlExpired,
    VideoTooLarge,
)
from vidgen_media.transfer import HttpTransfer, TransferPolicy

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
KEY = "videos/u/g.mp4"


@pytest.fixture(scope="module")
def blob() -> bytes:
    """25 MiB and a bit: three multipart parts, a size that is a multiple of nothing."""
    return os.urandom(25 * MiB + 12345)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


@pytest.fixture
def open_uploads(s3_settings: S3Settings, storage: MinioStorage) -> Any:
    """Multipart uploads started and neither completed nor aborted, in the test's bucket."""
    client = Minio(
        s3_settings.endpoint.split("://", 1)[1],
        access_key=s3_settings.access_key,
        secret_key=s3_settings.secret_key.get_secret_value(),
        secure=False,
        region=s3_settings.region,
    )

    async def listing() -> list[str]:
        result = await asyncio.to_thread(client._list_multipart_uploads, storage.bucket)
        return [u.upload_id for u in result.uploads]

    return listing


def policy(**overrides: Any) -> TransferPolicy:
    values: dict[str, Any] = {
        "max_bytes": 64 * MiB,
        "retries": 3,
        "backoff_s": 0.01,
        "chunk_bytes": 256 * 1024,
    }
    return TransferPolicy(**{**values, **overrides})


def tmp_copy() -> Path:
    fd, raw = tempfile.mkstemp(prefix="media-test-copy-")
    os.close(fd)
    return Path(raw)


def offset_of(request: dict[str, Any]) -> int:
    return int(request["range"].removeprefix("bytes=").rstrip("-"))


async def fetch(server: Any, client: Any, storage: Any, path: str, **kw: Any) -> Any:
    """Fetch into the store and a local copy; the copy holds exactly the stored bytes."""
    token = kw.pop("token", None)
    transfer = HttpTransfer(client, storage, policy(**kw))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        result = await transfer.fetch(server.url(path, token), KEY, copy)
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == result.sha256
        assert copy.stat().st_size == result.size
    return result


async def test_streams_into_a_multipart_upload_with_checksum(
    video_server, client, storage, blob
) -> None:
    route = video_server.serve("/t/plain.mp4", blob)
    result = await fetch(video_server, client, storage, "/t/plain.mp4")
    assert (result.size, result.sha256) == (len(blob), hashlib.sha256(blob).hexdigest())
    assert (result.requests, result.resumes, result.restarts) == (1, 0, 0)
    assert [r["range"] for r in route.gets] == ["bytes=0-"]
    info = await storage.stat(KEY)
    assert info is not None
    assert (info.size, info.etag, info.content_type) == (len(blob), result.etag, "video/mp4")
    assert result.etag.endswith("-3")  # a real multipart upload, three parts


async def test_a_reset_mid_stream_resumes_where_it_stopped(
    video_server, client, storage, blob, fault
) -> None:
    route = video_server.serve("/t/reset.mp4", blob, faults=[fault("reset", after=12 * MiB + 99)])
    result = await fetch(video_server, client, storage, "/t/reset.mp4")
    assert (result.requests, result.resumes, result.restarts) == (2, 1, 0)
    assert route.gets[0]["range"] == "bytes=0-"
    assert 11 * MiB < offset_of(route.gets[1]) <= 12 * MiB + 99
    assert result.sha256 == hashlib.sha256(blob).hexdigest()
    assert await storage.get_bytes(KEY) == blob


async def test_a_truncated_206_resumes(video_server, client, storage, blob, fault) -> None:
    route = video_server.serve("/t/trunc.mp4", blob, faults=[fault("truncate", after=5 * MiB)])
    result = await fetch(video_server, client, storage, "/t/trunc.mp4")
    assert (result.requests, result.resumes, result.restarts) == (2, 1, 0)
    assert offset_of(route.gets[1]) == 5 * MiB
    assert result.sha256 == hashlib.sha256(blob).hexdigest()
    assert await storage.get_bytes(KEY) == blob


async def test_without_range_support_a_cut_restarts_from_zero(
    video_server, client, storage, blob, fault, open_uploads
) -> None:
    route = video_server.serve(
        "/t/norange.mp4", blob, ranges=False, faults=[fault("close", after=12 * MiB)]
    )
    result = await fetch(video_server, client, storage, "/t/norange.mp4")
    assert (result.requests, result.resumes, result.restarts) == (2, 0, 1)
    assert [r["status"] for r in route.gets] == [200, 200]
    assert result.sha256 == hashlib.sha256(blob).hexdigest()
    assert await storage.get_bytes(KEY) == blob
    assert await open_uploads() == []  # the first upload (a part already sent) was aborted


async def test_a_file_changed_at_the_source_restarts_with_the_new_one(
    video_server, client, storage, blob, fault
) -> None:
    changed = blob[::-1]
    video_server.serve(
        "/t/changed.mp4", blob, faults=[fault("reset", after=12 * MiB, then_body=changed)]
    )
    result = await fetch(video_server, client, storage, "/t/changed.mp4")
    assert (result.resumes, result.restarts) == (1, 1)  # If-Range refused the resume
    assert result.sha256 == hashlib.sha256(changed).hexdigest()
    assert await storage.get_bytes(KEY) == changed


async def test_a_server_error_is_retried(video_server, client, storage, fault) -> None:
    body = os.urandom(300_000)
    route = video_server.serve("/t/503.mp4", body, faults=[fault("status", status=503)])
    result = await fetch(video_server, client, storage, "/t/503.mp4")
    assert [r["status"] for r in route.gets] == [503, 206]
    assert result.sha256 == hashlib.sha256(body).hexdigest()


async def test_persistent_failures_give_up_and_leave_no_object(
    video_server, client, storage, blob, fault, open_uploads
) -> None:
    faults = [fault("reset", after=11 * MiB), *[fault("status", status=502)] * 5]
    route = video_server.serve("/t/down.mp4", blob, faults=faults)
    with pytest.raises(TransientDownloadError, match="gave up after 4 failed requests"):
        await fetch(video_server, client, storage, "/t/down.mp4", retries=3)
    assert len(route.gets) == 4
    assert await storage.stat(KEY) is None
    assert await open_uploads() == []


async def test_a_refused_url_is_reported_as_expired(video_server, client, storage) -> None:
    route = video_server.serve("/t/signed.mp4", b"x" * 1000, tokens={"fresh"})
    with pytest.raises(UrlExpired, match="403"):
        await fetch(video_server, client, storage, "/t/signed.mp4", token="stale")
    assert len(route.gets) == 1
    assert await storage.stat(KEY) is None
    result = await fetch(video_server, client, storage, "/t/signed.mp4", token="fresh")
    assert result.size == 1000


async def test_a_missing_file_fails_without_retrying(video_server, client, storage) -> None:
    with pytest.raises(DownloadFailed, match="404") as caught:
        await fetch(video_server, client, storage, "/t/nothing-here.mp4")
    assert not caught.value.transient


async def test_an_announced_size_over_the_cap_is_refused_before_the_body(
    video_server, client, storage, blob
) -> None:
    video_server.serve("/t/big.mp4", blob)
    with pytest.raises(VideoTooLarge, match="over the cap"):
        await fetch(video_server, client, storage, "/t/big.mp4", max_bytes=20 * MiB)
    assert await storage.stat(KEY) is None


async def test_an_unannounced_size_over_the_cap_aborts_the_upload(
    video_server, client, storage, blob, open_uploads
) -> None:
    route = video_server.serve("/t/chunked.mp4", blob, ranges=False, chunked=True)
    with pytest.raises(VideoTooLarge, match="more than"):
        await fetch(video_server, client, storage, "/t/chunked.mp4", max_bytes=21 * MiB)
    assert route.gets[0]["status"] == 200
    assert await storage.stat(KEY) is None  # two parts were uploaded, then aborted
    assert await open_uploads() == []


async def test_an_empty_file_is_not_a_video(video_server, client, storage) -> None:
    video_server.serve("/t/empty.mp4", b"")
    with pytest.raises(InvalidVideo, match="empty"):
        await fetch(video_server, client, storage, "/t/empty.mp4")
    assert await storage.stat(KEY) is None


async def test_a_store_failing_mid_upload_fails_fast_instead_of_hanging(
    video_server, client, blob
) -> None:
    """Regression: put_stream blocked forever feeding a full queue its dead uploader left.

    The fake S3 answers every request after a pause, with AccessDenied: while it pauses, the
    download fills the upload queue; then the uploader dies and nobody reads the queue.
    """
    denied = (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
        b"<Message>no</Message><Resource>/b/k</Resource><RequestId>1</RequestId></Error>"
    )

    async def slow_refusal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            + f"Content-Length: {len(denied)}\r\n\r\n".encode()
            + denied
        )
        await writer.drain()
        writer.close()

    s3 = await asyncio.start_server(slow_refusal, "127.0.0.1", 0)
    try:
        endpoint = f"http://127.0.0.1:{s3.sockets[0].getsockname()[1]}"
        store = MinioStorage(S3Settings(endpoint=endpoint, bucket="refusing-bucket"))
        video_server.serve("/t/bad-store.mp4", blob)
        transfer = HttpTransfer(client, store, policy())
        with pytest.raises(StorageFailed, match="AccessDenied"):
            await asyncio.wait_for(
                transfer.fetch(video_server.url("/t/bad-store.mp4"), KEY, tmp_copy()), 20
            )
    finally:
        s3.close()
        await s3.wait_closed()
