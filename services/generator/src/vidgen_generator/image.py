"""The prompt image, in a form Runway can read.

Our object store is private, so a presigned URL of ours is not something Runway can fetch
(unless ``store_publicly_reachable`` says otherwise). The image goes as a base64 ``data:`` URI
when the encoded URI fits ``data_uri_max_bytes`` (Runway accepts up to 5 MB), else as an
ephemeral upload (``uploads.create_ephemeral`` → ``runway://`` URI). Uploading is safe to
repeat: it creates no task.
"""

from __future__ import annotations

import base64
import posixpath

from vidgen_common.errors import StorageError
from vidgen_common.storage import Storage
from vidgen_generator.errors import ImageUnavailable
from vidgen_generator.runway import RunwayClient

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def data_uri_length(size: int, content_type: str) -> int:
    """Length of the data URI of ``size`` bytes, without building it."""
    return len(f"data:{content_type};base64,") + 4 * ((size + 2) // 3)


def upload_filename(key: str, content_type: str) -> str:
    name = posixpath.basename(key) or "image"
    if "." not in name:
        name += _EXTENSIONS.get(content_type, "")
    return name


class PromptImages:
    """Turns an object key of our store into a ``promptImage`` value."""

    def __init__(
        self,
        storage: Storage,
        runway: RunwayClient,
        *,
        data_uri_max_bytes: int,
        store_publicly_reachable: bool = False,
    ) -> None:
        self._storage = storage
        self._runway = runway
        self._max = data_uri_max_bytes
        self._public = store_publicly_reachable

    async def prompt_image(self, key: str, content_type: str) -> str:
        """A data URI, a ``runway://`` URI or (public store only) a presigned URL.

        Raises :class:`ImageUnavailable` or :class:`~vidgen_runway.errors.RunwayCallError`.
        """
        try:
            info = await self._storage.stat(key)
        except StorageError as exc:
            raise ImageUnavailable(f"object store failed: {exc}", permanent=False) from exc
        if info is None:
            raise ImageUnavailable(f"prompt image {key!r} is not in the store", permanent=True)
        if self._public:
            return self._storage.presigned_get(key)
        try:
            data = await self._storage.get_bytes(key)
        except StorageError as exc:
            raise ImageUnavailable(f"object store failed: {exc}", permanent=False) from exc
        if data_uri_length(len(data), content_type) <= self._max:
            return data_uri(data, content_type)
        return await self._runway.upload(upload_filename(key, content_type), data, content_type)
