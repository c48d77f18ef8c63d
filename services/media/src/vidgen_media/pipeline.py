"""What happens to one video outside any transaction: store it, check it, make its poster.

:meth:`Pipeline.run` never raises a :class:`MediaError`: it returns an outcome for the handler
to record. It skips the download when the object is already stored and is the very object
recorded (same size and ETag, whose sha256 the ``transfers`` row holds), so a redelivery
after a crash does not download again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vidgen_common.errors import PermanentError, StorageError
from vidgen_common.storage import Storage
from vidgen_media.errors import InvalidVideo, MediaError, StorageFailed
from vidgen_media.ports import VideoFetcher, VideoProber
from vidgen_media.probe import VideoInfo

log = logging.getLogger(__name__)

_UNSAFE = ("/", "\\", "..")


def object_keys(user_id: str, generation_id: str) -> tuple[str, str]:
    """``videos/{userId}/{generationId}.mp4`` and the poster ``….jpg`` next to it."""
    for part in (user_id, generation_id):
        if not part or any(u in part for u in _UNSAFE) or not part.isprintable():
            raise PermanentError(f"unusable id in an object key: {part!r}")
    base = f"videos/{user_id}/{generation_id}"
    return f"{base}.mp4", f"{base}.jpg"


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


class Pipeline:
    def __init__(self, fetcher: VideoFetcher, prober: VideoProber, storage: Storage) -> None:
        self._fetcher = fetcher
        self._prober = prober
        self._storage = storage

    async def run(self, job: Job, record_stored: Callable[[Stored], Awaitable[None]]) -> Outcome:
        """Store, check and poster ``job``; ``record_stored`` commits the checksum once known."""
        stored: Stored | None = None
        try:
            stored = await self._reuse(job)
            if stored is None:
                result = await self._fetcher.fetch(job.url, job.video_key)
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
                await record_stored(stored)
            probe = await self._prober.probe(job.video_key)
            await self._put(job.thumbnail_key, probe.poster_jpeg)
        except InvalidVideo as exc:
            await self._discard(job.video_key)
            return Failed(exc)
        except MediaError as exc:
            return Failed(exc, stored)
        return Completed(stored, probe.info)

    async def _reuse(self, job: Job) -> Stored | None:
        known = job.known
        if known is None or known.etag is None:
            return None
        try:
            info = await self._storage.stat(job.video_key)
        except StorageError as exc:
            raise StorageFailed(str(exc)) from exc
        if info is None or info.size != known.size or info.etag != known.etag:
            log.info("%s is not the object recorded earlier: downloading again", job.video_key)
            return None
        log.info("%s already stored (sha256 %s): no new download", job.video_key, known.sha256)
        return known

    async def _put(self, key: str, jpeg: bytes) -> None:
        try:
            await self._storage.put_bytes(key, jpeg, "image/jpeg")
        except StorageError as exc:
            raise StorageFailed(str(exc)) from exc

    async def _discard(self, key: str) -> None:
        try:
            await self._storage.remove(key)
        except StorageError:
            log.exception("could not remove the invalid object %s", key)
