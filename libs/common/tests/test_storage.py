"""Storage on a real S3 server: streaming uploads, aborts, presigned URLs."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from vidgen_common.errors import StorageError
from vidgen_common.settings import S3Settings
from vidgen_common.storage import MinioStorage

pytestmark = pytest.mark.integration


async def chunks(
    total: int, size: int = 256 * 1024, fail_at: int | None = None
) -> AsyncIterator[bytes]:
    sent = 0
    block = os.urandom(size)
    while sent < total:
        if fail_at is not None and sent >= fail_at:
            raise ConnectionResetError("source went away")
        n = min(size, total - sent)
        yield block[:n]
        sent += n


async def test_ensure_bucket_is_idempotent(storage: MinioStorage) -> None:
    await storage.ensure_bucket()
    await storage.ensure_bucket()


async def test_put_stream_of_unknown_length_is_multipart_and_checksummed(
    storage: MinioStorage,
) -> None:
    total = 23 * 1024 * 1024 + 17  # over two 10 MiB parts, not a multiple of anything
    digest = hashlib.sha256()

    async def tee() -> AsyncIterator[bytes]:
        async for c in chunks(total):
            digest.update(c)
            yield c

    stored = await storage.put_stream("videos/u/g.mp4", tee(), "video/mp4", {"sha256": "x"})
    assert stored.size == total
    assert stored.sha256 == digest.hexdigest()
    info = await storage.stat("videos/u/g.mp4")
    assert info is not None
    assert info.size == total
    assert info.content_type == "video/mp4"
    assert info.metadata.get("sha256") == "x"
    assert stored.etag is not None
    assert stored.etag.strip('"').endswith("-3")  # three parts: a real multipart upload


async def test_a_failing_source_leaves_no_object(storage: MinioStorage) -> None:
    with pytest.raises(ConnectionResetError):
        await storage.put_stream(
            "videos/u/broken.mp4", chunks(30 * 1024 * 1024, fail_at=12 * 1024 * 1024), "video/mp4"
        )
    assert await storage.stat("videos/u/broken.mp4") is None


async def test_stat_of_a_missing_object_is_none(storage: MinioStorage) -> None:
    assert await storage.stat("nope") is None


async def test_presigned_get_serves_the_object_and_expires(storage: MinioStorage) -> None:
    await storage.put_bytes("images/u/p.png", b"\x89PNG fake", "image/png")
    url = storage.presigned_get("images/u/p.png", ttl_s=2)
    async with httpx.AsyncClient() as client:
        ok = await client.get(url)
        assert ok.status_code == 200
        assert ok.content == b"\x89PNG fake"
        tampered = await client.get(url.replace("images/u/p.png", "images/u/q.png"))
        assert tampered.status_code == 403
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (await client.get(url)).status_code == 200:
            assert loop.time() < deadline, "presigned URL never expired"
            await asyncio.sleep(0.25)
        assert (await client.get(url)).status_code == 403


async def test_wrong_credentials_are_refused(s3_settings: S3Settings) -> None:
    bad = MinioStorage(s3_settings.model_copy(update={"access_key": "nobody"}))
    with pytest.raises(StorageError):
        await bad.ensure_bucket()
