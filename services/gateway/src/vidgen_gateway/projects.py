"""Creating a project: check the uploaded image, store it, record it.

The image goes to ``images/{userId}/{projectId}.{ext}`` in the object store before the
``projects`` row is written; if the row cannot be written the object is removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.clock import utc_now
from vidgen_common.errors import StorageError
from vidgen_common.storage import Storage
from vidgen_gateway import store
from vidgen_gateway.images import check_image
from vidgen_gateway.models import Project
from vidgen_gateway.settings import GatewaySettings


def image_key(user_id: str, project_id: str, extension: str) -> str:
    return f"images/{user_id}/{project_id}.{extension}"


class Projects:
    def __init__(
        self,
        settings: GatewaySettings,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._storage = storage

    async def create(self, user_id: str, data: bytes) -> Project:
        """Check ``data`` (415/422 when refused), store it and record the project."""
        checked = await asyncio.to_thread(
            check_image,
            data,
            min_side=self._settings.image_min_side_px,
            max_side=self._settings.image_max_side_px,
        )
        project_id = str(uuid.uuid4())
        key = image_key(user_id, project_id, checked.kind.extension)
        digest = hashlib.sha256(data).hexdigest()
        await self._storage.put_bytes(
            key,
            data,
            checked.kind.content_type,
            metadata={"user-id": user_id, "project-id": project_id, "sha256": digest},
        )
        project = Project(
            id=project_id,
            user_id=user_id,
            image_key=key,
            content_type=checked.kind.content_type,
            width=checked.width,
            height=checked.height,
            size_bytes=len(data),
            sha256=digest,
            created_at=utc_now(),
        )
        try:
            async with self._sessions() as s:
                store.add_project(s, project)
                await s.commit()
        except BaseException:
            with contextlib.suppress(StorageError):
                await self._storage.remove(key)
            raise
        return project
