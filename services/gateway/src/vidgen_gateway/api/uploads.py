"""``POST /api/images/upload``: a prompt image becomes a project."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vidgen_common.storage import Storage
from vidgen_gateway.api.deps import DepsDep, ProjectsDep, SettingsDep, UserDep
from vidgen_gateway.api.errors import error_responses
from vidgen_gateway.multipart import read_file_field
from vidgen_gateway.schemas import UploadResponse

router = APIRouter(prefix="/api/images", tags=["images"])

_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "A PNG, JPEG or WebP image (judged by its content)",
                    }
                },
            }
        }
    },
}


@router.post(
    "/upload",
    status_code=201,
    response_model=UploadResponse,
    summary="Upload a prompt image (creates a project)",
    responses=error_responses(401, 413, 415, 422),
    openapi_extra={"requestBody": _BODY},
)
async def upload_image(
    request: Request, user: UserDep, projects: ProjectsDep, deps: DepsDep, settings: SettingsDep
) -> UploadResponse:
    """Store the image under the caller's prefix and answer the new project's id.

    Refused: not multipart or no ``file`` field (415/422), larger than the configured size
    (413, answered without reading the rest), not a PNG/JPEG/WebP that decodes (415), too
    small or too large in pixels for Runway (422).
    """
    part = await read_file_field(
        request.headers, request.stream(), "file", settings.upload_max_bytes
    )
    project = await projects.create(user, part.data)
    storage: Storage = deps.storage
    return UploadResponse(
        project_id=project.id,
        image_url=storage.presigned_get(project.image_key),
        width=project.width,
        height=project.height,
        content_type=project.content_type,
    )
