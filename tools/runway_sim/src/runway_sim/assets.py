"""Getting a prompt image's bytes: decoded data URI, filled upload, or a real HTTP fetch.

Fetches follow Runway's documented rules where they matter to a client: no redirects, status
200 only, an image `Content-Type` (not `application/octet-stream`), bounded size and time.
Every failure is an `AssetError` whose message is one of Runway's troubleshooting reasons.
"""

from __future__ import annotations

import asyncio

import httpx

from runway_sim.params import SUPPORTED_IMAGE_TYPES, ImageRef
from runway_sim.upload_store import UploadStore

USER_AGENT = "RunwayML API/simulator"


class AssetError(Exception):
    """The prompt image cannot be used; the message says why."""


async def fetch_url(
    client: httpx.AsyncClient, url: str, *, timeout_s: float, max_bytes: int
) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "GET", url, follow_redirects=False, headers={"User-Agent": USER_AGENT}
            ) as response:
                if response.status_code != 200:
                    code = response.status_code
                    raise AssetError(
                        f'Failed to fetch asset. Received HTTP response code "{code}".'
                    )
                media_type = response.headers.get("content-type", "").split(";")[0].strip()
                if media_type.lower() not in SUPPORTED_IMAGE_TYPES:
                    raise AssetError("Unsupported asset type.")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise AssetError("Asset size exceeds the limit.")
                return bytes(data)
    except TimeoutError as exc:
        raise AssetError("Timeout while fetching asset.") from exc
    except httpx.HTTPError as exc:
        raise AssetError(
            "Failed to fetch asset. The URL may be incorrect or the server hosting the asset "
            "may be down."
        ) from exc


async def resolve(
    ref: ImageRef,
    uploads: UploadStore,
    client: httpx.AsyncClient | None,
    *,
    timeout_s: float,
    max_bytes: int,
) -> bytes:
    """The raw bytes behind one prompt image reference."""
    if ref.kind == "data":
        assert ref.data is not None
        return ref.data
    if ref.kind == "upload":
        upload = uploads.lookup(ref.uri)
        if upload is None or upload.data is None:
            raise AssetError("The upload URI is unknown or has expired.")
        return upload.data
    if client is None:
        raise AssetError("Failed to fetch asset (the simulator is shutting down).")
    return await fetch_url(client, ref.uri, timeout_s=timeout_s, max_bytes=max_bytes)
