"""Settings of the media service (environment prefix ``VIDGEN_``, plus the shared groups)."""

from __future__ import annotations

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
        description="handler attempts after transient failures (download/storage) before "
        "GenerationFailed; keep it at most KAFKA_HANDLER_RETRIES so no event reaches the DLQ",
    )
    max_url_refreshes: int = Field(
        3, ge=0, description="fresh output URLs asked for (VideoUrlExpired) before giving up"
    )
    probe_timeout_s: float = Field(30.0, gt=0, description="I/O timeout of the video check")
    thumbnail_max_width: int = Field(640, ge=16)
