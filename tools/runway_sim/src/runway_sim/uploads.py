"""Ephemeral uploads as `client.uploads.create_ephemeral(file=...)` drives them.

1. `POST /v1/uploads {"filename", "type": "ephemeral"}` → `{uploadUrl, fields, runwayUri}`.
2. The SDK POSTs `fields` + `file` as multipart to `uploadUrl` (served here, S3-style, no API
   key: the signed policy authorises it) → 204.
3. `runwayUri` (`runway://<id>`) is then accepted as `promptImage`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from runway_sim.auth import require_api_access
from runway_sim.errors import ApiError, issue, s3_error, validation_error
from runway_sim.state import get_state

MAX_FILENAME = 255


async def create_upload(request: Request) -> dict[str, object]:
    state = get_state(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Request body must be valid JSON.") from exc
    if not isinstance(body, dict):
        raise validation_error([issue([], "Expected an object", "invalid_type")])
    filename, kind = body.get("filename"), body.get("type")
    problems = []
    if not isinstance(filename, str) or not 0 < len(filename) <= MAX_FILENAME or "/" in filename:
        problems.append(issue(["filename"], "Expected a file name of 1 to 255 characters"))
    if kind != "ephemeral":
        problems.append(
            issue(["type"], f"Invalid enum value. Expected 'ephemeral', received '{kind}'")
        )
    if problems:
        raise validation_error(problems)
    assert isinstance(filename, str)
    upload = state.uploads.open(filename)
    return {
        "uploadUrl": f"{state.base_url(request)}/_uploads/ephemeral",
        "fields": state.uploads.form_fields(upload, state.settings.signing_secret),
        "runwayUri": upload.uri,
    }


async def receive_upload(request: Request) -> Response:
    state = get_state(request)
    limit = state.settings.max_asset_bytes
    try:
        form = await request.form(max_files=1, max_fields=20)
    except Exception:  # malformed multipart
        return s3_error(400, "MalformedPOSTRequest", "The body of the POST is not valid multipart.")
    try:
        key, policy, signature = (form.get(n) for n in ("key", "policy", "x-amz-signature"))
        file = form.get("file")
        if not all(isinstance(v, str) for v in (key, policy, signature)):
            return s3_error(400, "InvalidArgument", "key, policy and x-amz-signature are required.")
        if not isinstance(file, UploadFile):
            return s3_error(400, "InvalidArgument", "POST requires exactly one file upload.")
        assert isinstance(key, str)
        assert isinstance(policy, str)
        assert isinstance(signature, str)
        upload, error = state.uploads.accept(key, policy, signature, state.settings.signing_secret)
        if upload is None:
            return s3_error(403, error, "Invalid or expired upload policy.")
        data = await file.read(limit + 1)
        if len(data) > limit:
            return s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum size.")
        upload.data, upload.content_type = data, file.content_type
    finally:
        await form.close()
    state.counters.uploads_completed += 1
    return Response(status_code=204)


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/v1/uploads",
        create_upload,
        methods=["POST"],
        dependencies=[Depends(require_api_access)],
    )
    router.add_api_route("/_uploads/ephemeral", receive_upload, methods=["POST"])
    return router
