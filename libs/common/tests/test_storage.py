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


async def test_download_to_streams_the_object_into_a_file(storage: MinioStorage, tmp_path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    put = await storage.put_bytes("videos/u/d.mp4", data, "video/mp4")
    path = tmp_path / "copy"
    path.write_bytes(b"old content, replaced")
    got = await storage.download_to("videos/u/d.mp4", path)
    assert path.read_bytes() == data
    assert (got.size, got.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert got.etag == (put.etag or "").strip('"')
    with pytest.raises(StorageError):
        await storage.download_to("videos/u/missing.mp4", path)


async def test_incomplete_uploads_are_listed_by_prefix_and_aborted(storage: MinioStorage) -> None:
    """An upload left by a crash (created, a part sent, never completed)."""

    def begin(key: str) -> str:
        client = storage._client
        upload_id = client._create_multipart_upload(storage.bucket, key, {})
        client._upload_part(storage.bucket, key, os.urandom(1024), None, upload_id, 1)
        return str(upload_id)

    left = await asyncio.to_thread(begin, "videos/u/crashed.mp4")
    other = await asyncio.to_thread(begin, "images/u/other.png")
    found = await storage.incomplete_uploads("videos/")
    assert [(u.key, u.upload_id) for u in found] == [("videos/u/crashed.mp4", left)]
    assert found[0].initiated is not None
    await storage.abort_upload("videos/u/crashed.mp4", left)
    await storage.abort_upload("videos/u/crashed.mp4", left)  # gone already: fine
    assert await storage.incomplete_uploads("videos/") == []
    assert [u.upload_id for u in await storage.incomplete_uploads("images/")] == [other]
    await storage.abort_upload("images/u/other.png", other)
