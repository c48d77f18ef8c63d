"""What happens to one video outside any transaction: store it, check it, make its poster.

:meth:`Pipeline.run` never raises a :class:`MediaError`: it returns an outcome for the handler
to record. It skips the download when the object is already stored and is the very object
recorded (same size and ETag, and the same sha256 when read back), so a redelivery after a
crash does not download from the source again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vidgen_common.errors import StorageError
from vidgen_common.storage import Storage
from vidgen_common.transient import is_transient
from vidgen_media.errors import MediaError, SpoolFailed, StorageFailed
from vidgen_media.probe import Probe, VideoInfo
from vidgen_media.spool import Spool
from vidgen_media.transfer import TransferResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    size: int
    sha256: str
    etag: str | None
    requests: int = 0
    resumes: int = 0
    restarts: int = 0


@dataclass(frozen=True)
class Job:
    generation_id: str
    url: str
    video_key: str
    thumbnail_key: str
    known: Stored | None = None
    """What an earlier attempt stored (from the ``transfers`` row), if it got that far."""
    retry: bool = False
    """An earlier delivery began this transfer (it may have left an unfinished upload)."""


@dataclass(frozen=True)
class Completed:
    stored: Stored
    info: VideoInfo


@dataclass(frozen=True)
class Failed:
    error: MediaError
    stored: Stored | None = None
    """Set when the video is stored and intact, so a retry need not download it again."""


Outcome = Completed | Failed


class VideoFetcher(Protocol):
    """Gets a video into the store (real: :class:`~vidgen_media.transfer.HttpTransfer`)."""

    async def fetch(self, url: str, key: str, copy: Path) -> TransferResult:
        """Stream ``url`` into the object at ``key`` and into the local file ``copy``; no
        object is left when this raises.

        Raises :class:`~vidgen_media.errors.MediaError` subclasses (``UrlExpired``,
        ``DownloadFailed``, ``VideoTooLarge``, ``InvalidVideo``, ``StorageFailed``,
        ``SpoolFailed``).
        """


class VideoProber(Protocol):
    """Checks a local copy (real: :class:`~vidgen_media.probe.AvProber`)."""

    async def probe(self, path: Path) -> Probe:
        """Check the local copy is a playable video and make its poster JPEG.

        Raises ``InvalidVideo`` (not a video) or ``SpoolFailed`` (could not read the file).
        """


class Pipeline:
    def __init__(
        self, fetcher: VideoFetcher, prober: VideoProber, storage: Storage, spool: Spool
    ) -> None:
        self._fetcher = fetcher
        self._prober = prober
        self._storage = storage
        self._spool = spool

    async def run(self, job: Job, record_stored: Callable[[Stored], Awaitable[None]]) -> Outcome:
        """Store, check and poster ``job``; ``record_stored`` commits the checksum once known.

        The video is checked from a local copy of the bytes (written while they were stored,
        or read back from the store when an earlier delivery stored them), so only the
        video's content, never the network, decides ``InvalidVideo``. Nothing is removed
        here: the handler removes an invalid object under its lease.
        """
        stored: Stored | None = None
        stamps: dict[str, object] = {"generation_id": job.generation_id, "start": time.time()}
        try:
            with self._spool.reserve(job.generation_id) as copy:
                stored = await self._reuse(job, copy)
                if stored is None:
                    if job.retry:
                        await self._abort_leftovers(job.video_key)
                    result = await self._fetcher.fetch(job.url, job.video_key, copy)
                    stored = Stored(
                        result.size,
                        result.sha256,
                        result.etag,
                        result.requests,
                        result.resumes,
                        result.restarts,
                    )
                    log.info(
                        "stored %s: %d bytes in %d requests (%d resumed, %d restarted)",
                        job.video_key,
                        result.size,
                        result.requests,
                        result.resumes,
                        result.restarts,
                    )
                    stamps["transferred"] = time.time()
                    await record_stored(stored)
                stamps["recorded"] = time.time()
                probe = await self._prober.probe(copy)
                stamps["probed"] = time.time()
            await self._put(job.thumbnail_key, probe.poster_jpeg)
            stamps["poster_stored"] = time.time()
            log.info("video stored, checked and postered", extra={"timings": stamps})
        except MediaError as exc:
            return Failed(exc, stored)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return Failed(StorageFailed(f"a dependency failed: {exc!r}"), stored)
        return Completed(stored, probe.info)

    async def _reuse(self, job: Job, copy: Path) -> Stored | None:
        """The object an earlier delivery stored, read back into ``copy``, if it is intact."""
        known = job.known
        if known is None or known.etag is None:
            return None
        try:
            info = await self._storage.stat(job.video_key)
            if info is None or info.size != known.size or info.etag != known.etag:
                log.info("%s is not the object recorded earlier: downloading again", job.video_key)
                return None
            got = await self._storage.download_to(job.video_key, copy)
        except StorageError as exc:
            raise StorageFailed(f"could not read back {job.video_key}: {exc}") from exc
        except OSError as exc:
            raise SpoolFailed(f"could not copy {job.video_key} to local disk: {exc}") from exc
        if got.sha256 != known.sha256:
            log.warning("%s read back with another sha256: downloading again", job.video_key)
            return None
        log.info("%s already stored (sha256 %s): no new download", job.video_key, known.sha256)
        return known

    async def _abort_leftovers(self, key: str) -> None:
        """Abort multipart uploads of ``key`` an earlier delivery left (it was killed): this
        delivery holds the transfer's lease, so none of them is still wanted."""
        try:
            for upload in await self._storage.incomplete_uploads(key):
                if upload.key == key:
                    log.info(
                        "aborting the upload %s of %s left by an earlier try", upload.upload_id, key
                    )
                    await self._storage.abort_upload(key, upload.upload_id)
        except StorageError as exc:
            raise StorageFailed(f"could not list or abort old uploads of {key}: {exc}") from exc

    async def _put(self, key: str, jpeg: bytes) -> None:
        try:
            await self._storage.put_bytes(key, jpeg, "image/jpeg")
        except StorageError as exc:
            raise StorageFailed(str(exc)) from exc
