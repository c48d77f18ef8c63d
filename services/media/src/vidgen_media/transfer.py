"""Streaming an output URL into the object store, resuming on faults, under a size cap.

:meth:`HttpTransfer.fetch` GETs the URL with ``Range: bytes=0-`` (a server that supports
ranges answers 206 and tells the total size) and hands the body, as it arrives, to
:meth:`~vidgen_common.storage.Storage.put_stream`: a multipart upload whose memory is bounded by
the part size, whatever the video's size. sha256 and size are computed on the way.

Faults:

- a connection reset, a timeout, a body shorter than announced, a 408/429/5xx: retried with
  exponential backoff, at most ``retries`` failed requests per fetch. When the server
  supports ranges and the file is unchanged (same total, same ETag, sent as ``If-Range``) the
  download resumes at the first missing byte and the same upload goes on, sha256 running;
  otherwise the upload is aborted and the download starts again from byte 0.
- 401/403: the signed URL expired or is no longer valid → :class:`UrlExpired`.
- any other 4xx → :class:`DownloadFailed`; an empty body → :class:`InvalidVideo`.
- more than ``max_bytes`` (announced up front or counted) → :class:`VideoTooLarge`.

A failed fetch never leaves an object at ``key``: ``put_stream`` aborts the multipart upload.
A local copy that cannot be written raises :class:`SpoolFailed` (retried: our disk, not the
video).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import httpx

from vidgen_common.backoff import exponential_delay
from vidgen_common.errors import StorageError
from vidgen_common.storage import Storage
from vidgen_media.errors import (
    DownloadFailed,
    InvalidVideo,
    SpoolFailed,
    StorageFailed,
    TransientDownloadError,
    UrlExpired,
    VideoTooLarge,
)

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class TransferPolicy:
    max_bytes: int
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0
    chunk_bytes: int = 1024 * 1024
    content_type: str = "video/mp4"


@dataclass(frozen=True)
class TransferResult:
    """What was stored, and what it took (``requests`` GETs, of which resumes and restarts)."""

    key: str
    size: int
    sha256: str
    etag: str | None
    requests: int
    resumes: int
    restarts: int


class _Retry(Exception):
    """This request failed in a way another request may not."""


class _Restart(Exception):
    """Resuming is impossible: abort this upload and download again from byte 0."""


class _Attempts:
    """The failed-request budget of one fetch (shared by its restarts) and its counters."""

    def __init__(self, policy: TransferPolicy) -> None:
        self._policy = policy
        self.failures = 0
        self.requests = 0
        self.resumes = 0
        self.restarts = 0

    async def failed(self, url_key: str, exc: BaseException) -> None:
        """Count a failed request; wait the backoff, or raise when the budget is spent."""
        self.failures += 1
        if self.failures > self._policy.retries:
            raise TransientDownloadError(
                f"gave up after {self.failures} failed requests; last: {_describe(exc)}"
            ) from exc
        delay = exponential_delay(
            self.failures, base_s=self._policy.backoff_s, cap_s=self._policy.backoff_max_s
        )
        log.warning("download of %s failed (%s); retrying in %.2fs", url_key, _describe(exc), delay)
        await asyncio.sleep(delay)


async def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The start of an error body, without reading more of it than that."""
    data = b""
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) >= limit:
            break
    return data[:limit].decode(errors="replace")


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


class _Download:
    """The body of one upload: one GET, then ranged GETs resuming where a failed one stopped."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        key: str,
        policy: TransferPolicy,
        attempts: _Attempts,
    ) -> None:
        self._client = client
        self._url = url
        self._key = key
        self._policy = policy
        self._attempts = attempts
        self.offset = 0
        self.total: int | None = None
        self._etag: str | None = None
        self._ranges = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        while True:
            try:
                async with contextlib.aclosing(self._request()) as body:
                    async for chunk in body:
                        yield chunk
            except (httpx.TransportError, _Retry) as exc:
                await self._attempts.failed(self._key, exc)
                if self.offset > 0 and not self._ranges:
                    raise _Restart(f"the server does not resume ({_describe(exc)})") from exc
                if self.offset > 0:
                    self._attempts.resumes += 1
                    log.info("resuming %s at byte %d of %s", self._key, self.offset, self.total)
                continue
            return

    async def _request(self) -> AsyncGenerator[bytes, None]:
        headers = {"Range": f"bytes={self.offset}-", "Accept-Encoding": "identity"}
        if self.offset and self._etag and not self._etag.startswith("W/"):
            headers["If-Range"] = self._etag  # a strong validator: resume only the same file
        self._attempts.requests += 1
        async with self._client.stream("GET", self._url, headers=headers) as response:
            end = await self._accept(response)
            pending: list[bytes] = []
            size = 0
            async for piece in response.aiter_bytes():
                pending.append(piece)
                size += len(piece)
                if size >= self._policy.chunk_bytes:
                    yield self._count(pending)
                    pending, size = [], 0
            if pending:
                yield self._count(pending)
        if end is not None and self.offset < end:
            raise _Retry(f"body ended at byte {self.offset} of {end}")

    def _count(self, pieces: list[bytes]) -> bytes:
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.offset += len(chunk)
        if self.offset > self._policy.max_bytes:
            raise VideoTooLarge(f"more than {self._policy.max_bytes} bytes")
        return chunk

    async def _accept(self, response: httpx.Response) -> int | None:
        """Check the response; the offset its body should end at (None: unknown)."""
        status = response.status_code
        if status in (401, 403):
            raise UrlExpired(f"the output URL answered {status}: {await _excerpt(response)}")
        if status in _RETRY_STATUSES or status >= 500:
            raise _Retry(f"the output URL answered {status}")
        if status == 416:
            if self.offset == 0:
                raise InvalidVideo("the output is empty")
            raise _Restart(f"416 at byte {self.offset}: the file changed")
        etag = response.headers.get("etag")
        if status == 200:
            if self.offset > 0:
                raise _Restart("the server answered a ranged request with the whole file")
            self._ranges = response.headers.get("accept-ranges", "").lower() == "bytes"
            length = response.headers.get("content-length")
            self._found(int(length) if length and length.isdigit() else None, etag)
            return self.total
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
            if match is None or int(match[1]) != self.offset:
                problem = f"unusable Content-Range {response.headers.get('content-range')!r}"
                if self.offset == 0:
                    raise DownloadFailed(problem)
                raise _Restart(problem)
            total = None if match[3] == "*" else int(match[3])
            if self.offset > 0 and (total != self.total or etag != self._etag):
                raise _Restart("the file changed between requests")
            self._ranges = True
            self._found(total, etag)
            return int(match[2]) + 1
        raise DownloadFailed(f"the output URL answered {status}")

    def _found(self, total: int | None, etag: str | None) -> None:
        if total == 0:
            raise InvalidVideo("the output is empty")
        if total is not None and total > self._policy.max_bytes:
            raise VideoTooLarge(f"{total} bytes, over the cap of {self._policy.max_bytes}")
        self.total = total
        self._etag = etag


async def _tee(chunks: AsyncGenerator[bytes, None], copy: Path) -> AsyncGenerator[bytes, None]:
    """``chunks``, also written to the local copy (truncated first: a restart starts over)."""
    try:
        out = await asyncio.to_thread(copy.open, "wb")
    except OSError as exc:
        raise SpoolFailed(f"the local copy {copy} could not be opened: {exc}") from exc
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                try:
                    await asyncio.to_thread(out.write, chunk)
                except OSError as exc:
                    raise SpoolFailed(f"the local copy could not be written: {exc}") from exc
                yield chunk
    finally:
        await asyncio.to_thread(out.close)


class HttpTransfer:
    """Downloads an output URL straight into the store (a
    :class:`~vidgen_media.pipeline.VideoFetcher`)."""

    def __init__(self, client: httpx.AsyncClient, storage: Storage, policy: TransferPolicy) -> None:
        self._client = client
        self._storage = storage
        self._policy = policy

    async def fetch(self, url: str, key: str, copy: Path) -> TransferResult:
        attempts = _Attempts(self._policy)
        while True:
            download = _Download(self._client, url, key, self._policy, attempts)
            chunks = _tee(download.chunks(), copy)
            try:
                stored = await self._storage.put_stream(key, chunks, self._policy.content_type)
            except _Restart as exc:
                attempts.restarts += 1
                log.warning("restarting the download of %s from byte 0: %s", key, exc)
                continue
            except StorageError as exc:
                raise StorageFailed(str(exc)) from exc
            finally:
                await chunks.aclose()
            if download.total is not None and stored.size != download.total:
                # Cannot happen with a well-behaved source (the body is checked against the
                # total as it arrives); the object is ours (the lease), so it is replaced.
                raise TransientDownloadError(f"stored {stored.size} bytes of {download.total}")
            return TransferResult(
                key=key,
                size=stored.size,
                sha256=stored.sha256,
                etag=stored.etag.strip('"') if stored.etag else None,
                requests=attempts.requests,
                resumes=attempts.resumes,
                restarts=attempts.restarts,
            )
