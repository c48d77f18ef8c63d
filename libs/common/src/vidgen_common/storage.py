"""Object storage (MinIO or any S3): the :class:`Storage` port and its minio adapter.

The minio client is synchronous; calls run in worker threads. :meth:`Storage.put_stream`
uploads a body of unknown length from an async iterator as a multipart upload while it
arrives: memory stays bounded by the part size plus a small queue, whatever the size, and a
failure aborts the upload so no half object is left that looks complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error

from vidgen_common.errors import StorageError
from vidgen_common.settings import S3Settings

T = TypeVar("T")

MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    etag: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    metadata: dict[str, str]
    etag: str | None = None


@dataclass(frozen=True)
class IncompleteUpload:
    """A multipart upload begun and neither completed nor aborted (its parts take space)."""

    key: str
    upload_id: str
    initiated: datetime | None


class Storage(Protocol):
    """What services need from an object store."""

    async def ensure_bucket(self) -> None: ...

    async def put_bytes(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> StoredObject: ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def remove(self, key: str) -> None: ...

    def presigned_get(self, key: str, ttl_s: int | None = None) -> str: ...

    async def download_to(self, key: str, path: Path) -> StoredObject:
        """Stream the object into the file at ``path`` (replaced), with its size and sha256."""
        ...

    async def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """Multipart uploads under ``prefix`` that were never completed or aborted."""
        ...

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one multipart upload (gone already: no error)."""
        ...


def _client(endpoint: str, settings: S3Settings) -> Minio:
    url = urlsplit(endpoint)
    return Minio(
        url.netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key.get_secret_value(),
        secure=url.scheme == "https",
        region=settings.region,
    )


def _meta(metadata: dict[str, str] | None) -> dict[str, str | list[str] | tuple[str]] | None:
    return dict(metadata) if metadata else None


class _QueueReader(io.RawIOBase):
    """A blocking file-like reader fed, chunk by chunk, from the event loop.

    If the reading side gives up (its upload failed), it calls :meth:`abandon`: further
    :meth:`put` calls return at once instead of blocking forever on a full queue.
    """

    def __init__(self, maxsize: int = 8) -> None:
        super().__init__()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize)
        self._buffer = bytearray()  # appended in place: no quadratic re-copying of a part
        self._eof = False
        self._abandoned = threading.Event()

    def readable(self) -> bool:
        return True

    def put(self, item: bytes | BaseException | None) -> None:
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return

    def abandon(self) -> None:
        self._abandoned.set()

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) < size):
            item = self._queue.get()
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buffer += item
        if size < 0:
            size = len(self._buffer)
        with memoryview(self._buffer) as view:
            out = bytes(view[:size])
        del self._buffer[:size]
        return out


class MinioStorage:
    """:class:`Storage` on MinIO/S3 through the minio client."""

    def __init__(self, settings: S3Settings, bucket: str | None = None, part_size: int = 0) -> None:
        self._settings = settings
        self.bucket = bucket or settings.bucket
        self._client = _client(settings.endpoint, settings)
        self._signer = _client(settings.public_endpoint or settings.endpoint, settings)
        # 0 (or below S3's 5 MiB minimum): 10 MiB parts; memory is about 4-5 parts in flight
        self._part_size = part_size if part_size >= MIN_PART_SIZE else MIN_PART_SIZE * 2

    async def ensure_bucket(self) -> None:
        def work() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await self._run(work)

    async def put_bytes(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        def work() -> StoredObject:
            result = self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type,
                metadata=_meta(metadata),
            )
            return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), result.etag)

        return await self._run(work)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        reader = _QueueReader()
        digest = hashlib.sha256()
        size = 0
        result: list[str | None] = []
        error: list[BaseException] = []

        def upload() -> None:
            try:
                res = self._client.put_object(
                    self.bucket,
                    key,
                    cast(BinaryIO, reader),
                    length=-1,
                    content_type=content_type,
                    metadata=_meta(metadata),
                    part_size=self._part_size,
                )
                result.append(res.etag)
            except BaseException as exc:  # surfaced to the caller below
                error.append(exc)
                reader.abandon()  # the feeding loop must not block on a queue nobody reads

        thread = threading.Thread(target=upload, name=f"s3-upload-{key}", daemon=True)
        thread.start()
        loop = asyncio.get_running_loop()
        try:
            async for chunk in chunks:
                if error:
                    break
                digest.update(chunk)
                size += len(chunk)
                await loop.run_in_executor(None, reader.put, chunk)
        except BaseException as exc:
            reader.put(StorageError(f"source failed: {exc!r}"))  # aborts the multipart upload
            await loop.run_in_executor(None, thread.join)
            raise
        reader.put(None)
        await loop.run_in_executor(None, thread.join)
        if error:
            raise StorageError(f"upload of {key} failed: {error[0]!r}") from error[0]
        return StoredObject(key, size, digest.hexdigest(), result[0] if result else None)

    async def stat(self, key: str) -> ObjectInfo | None:
        def work() -> ObjectInfo | None:
            try:
                st = self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise
            meta = {
                k.lower().removeprefix("x-amz-meta-"): v
                for k, v in (st.metadata or {}).items()
                if k.lower().startswith("x-amz-meta-")
            }
            etag = st.etag.strip('"') if st.etag else None
            return ObjectInfo(key, st.size or 0, st.content_type, meta, etag)

        return await self._run(work)

    async def get_bytes(self, key: str) -> bytes:
        def work() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        return await self._run(work)

    async def remove(self, key: str) -> None:
        await self._run(lambda: self._client.remove_object(self.bucket, key))

    async def download_to(self, key: str, path: Path) -> StoredObject:
        def work() -> StoredObject:
            digest = hashlib.sha256()
            size = 0
            response = self._client.get_object(self.bucket, key)
            try:
                with path.open("wb") as out:
                    for chunk in response.stream(1024 * 1024):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                etag = response.headers.get("etag")
            finally:
                response.close()
                response.release_conn()
            return StoredObject(key, size, digest.hexdigest(), etag.strip('"') if etag else None)

        return await self._run(work)

    async def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """Listed without a prefix and filtered here: MinIO lists an upload under a prefix
        only when the prefix is the whole key, and nanio ignores the prefix."""

        def work() -> list[IncompleteUpload]:
            found: list[IncompleteUpload] = []
            marker: str | None = None
            for _ in range(1000):  # pages of 1000; bounded whatever the server answers
                page = self._client._list_multipart_uploads(
                    self.bucket, key_marker=marker, max_uploads=1000
                )
                found += [
                    IncompleteUpload(u.object_name, u.upload_id, u.initiated_time)
                    for u in page.uploads
                    if u.object_name.startswith(prefix) and u.upload_id
                ]
                if not page.is_truncated or not page.next_key_marker:
                    break
                marker = page.next_key_marker
            return found

        return await self._run(work)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        def work() -> None:
            try:
                self._client._abort_multipart_upload(self.bucket, key, upload_id)
            except S3Error as exc:
                if exc.code != "NoSuchUpload":
                    raise

        await self._run(work)

    def presigned_get(self, key: str, ttl_s: int | None = None) -> str:
        """A GET URL signed for the public endpoint; computed locally, no request made."""
        ttl = timedelta(seconds=ttl_s or self._settings.presign_ttl_s)
        return str(self._signer.presigned_get_object(self.bucket, key, expires=ttl))

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except S3Error as exc:
            raise StorageError(f"{exc.code}: {exc.message}") from exc
