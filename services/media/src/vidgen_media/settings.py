"""Settings of the media service (environment prefix ``VIDGEN_``, plus the shared groups)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from vidgen_common.settings import ServiceSettings

MiB = 1024 * 1024


class MediaSettings(ServiceSettings):
    service_name: str = "media"

    max_video_bytes: int = Field(
        512 * MiB, ge=1, description="size cap: a larger output fails with video_too_large"
    )
    max_concurrent_transfers: int = Field(
        2, ge=1, description="transfers running at once (also the number of consumers)"
    )
    download_retries: int = Field(
        5, ge=0, description="failed requests (resets, truncations, 5xx) tolerated per download"
    )
    download_backoff_s: float = Field(0.5, ge=0, description="first retry delay, then doubled")
    download_backoff_max_s: float = Field(10.0, ge=0)
    download_connect_timeout_s: float = Field(10.0, gt=0)
    download_read_timeout_s: float = Field(30.0, gt=0, description="longest silence mid-body")
    chunk_bytes: int = Field(
        1 * MiB, ge=64 * 1024, description="download chunks are coalesced to this size"
    )
    upload_part_bytes: int = Field(
        5 * MiB,
        ge=5 * MiB,
        description="multipart part size; memory per transfer is about 5 parts (3 uploading)",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="handler attempts after failures of the source (the output URL keeps "
        "failing) before GenerationFailed; keep it at most KAFKA_HANDLER_RETRIES so no event "
        "reaches the DLQ (our own store or disk being away is waited for, never counted)",
    )
    max_url_refreshes: int = Field(
        8,
        ge=0,
        description="fresh output URLs asked for (VideoUrlExpired) before giving up; the "
        "poller backs off before each after the first, so 8 span more than 45 s",
    )
    probe_timeout_s: float = Field(30.0, gt=0, description="I/O timeout of the video check")
    spool_dir: Path | None = Field(
        None,
        description="where local copies of videos being stored are checked from (default: "
        "the system's temporary directory); needs max_concurrent_transfers x "
        "max_video_bytes free",
    )
    transfer_lease_s: float = Field(
        60.0,
        gt=0,
        description="a transfer's lease, renewed every third of it while it runs; another "
        "delivery of the same video waits for it, or takes over once it runs out (the "
        "holder died)",
    )
    stall_after_s: float = Field(
        600.0,
        gt=0,
        description="an unfinished transfer with no live lease unchanged this long (its "
        "delivery is gone, or a fresh VideoReady never came) is re-driven: a fresh "
        "VideoReady is asked for (VideoUrlExpired)",
    )
    max_redrives: int = Field(
        3, ge=0, description="re-drives of a stalled transfer before it fails media_stalled"
    )
    sweep_interval_s: float = Field(
        60.0, gt=0, description="how often stalled transfers, old uploads and copies are swept"
    )
    abandoned_upload_s: float = Field(
        3600.0,
        gt=0,
        description="a multipart upload under videos/ older than this, of no transfer being "
        "worked on, is aborted (a crash left it); local copies older than this are removed",
    )
    thumbnail_max_width: int = Field(640, ge=16)
