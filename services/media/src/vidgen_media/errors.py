"""Errors of the media service; each carries the ``error_code`` it is reported with.

MediaError                      (vidgen_common.errors.VidgenError)
├── UrlExpired                  the output URL answered 403: ask the poller for a fresh one
├── DownloadFailed              download_failed: the source refused or kept failing
│   └── TransientDownloadError  download_failed, but a later attempt may succeed
├── VideoTooLarge               video_too_large: over the size cap (upload aborted)
├── InvalidVideo                invalid_video: not a playable video (object removed)
└── StorageFailed               storage_failed: the object store failed (a later try may work)

Transient ones (``TransientDownloadError``, ``StorageFailed``) are retried by the handler up
to ``max_attempts`` before the generation fails; the others fail it at once.
"""

from __future__ import annotations

from typing import ClassVar

from vidgen_common.errors import VidgenError


class MediaError(VidgenError):
    code: ClassVar[str] = "media_failed"
    transient: ClassVar[bool] = False


class UrlExpired(MediaError):
    code = "url_expired"


class DownloadFailed(MediaError):
    code = "download_failed"


class TransientDownloadError(DownloadFailed):
    transient = True


class VideoTooLarge(MediaError):
    code = "video_too_large"


class InvalidVideo(MediaError):
    code = "invalid_video"


class StorageFailed(MediaError):
    code = "storage_failed"
    transient = True
