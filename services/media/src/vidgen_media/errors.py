"""Errors of the media service; each carries the ``error_code`` it is reported with.

MediaError                      (vidgen_common.errors.VidgenError)
├── UrlExpired                  the output URL answered 403: ask the poller for a fresh one
├── DownloadFailed              download_failed: the source refused or kept failing
│   └── TransientDownloadError  download_failed, but a later attempt may succeed
├── VideoTooLarge               video_too_large: over the size cap (upload aborted)
├── InvalidVideo                invalid_video: not a playable video (object removed)
├── StorageFailed               the object store failed                  (also TransientError)
├── SpoolFailed                 the local copy could not be written/read (also TransientError)
└── TransferBusy                another delivery holds the transfer's lease (also TransientError)

``TransientDownloadError`` (the *source* kept failing) is retried through redelivery up to
``max_attempts``, then the generation fails. The ``TransientError`` ones are our own
dependencies being away (or another delivery working on it): the consumer retries them for as
long as it takes and they never fail a generation; only a video that is really broken is
rejected.
"""

from __future__ import annotations

from typing import ClassVar

from vidgen_common.errors import TransientError, VidgenError


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


class StorageFailed(MediaError, TransientError):
    code = "storage_failed"
    transient = True


class SpoolFailed(MediaError, TransientError):
    code = "spool_failed"
    transient = True


class TransferBusy(MediaError, TransientError):
    code = "transfer_busy"
    transient = True
