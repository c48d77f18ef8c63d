"""Ephemeral uploads: slots handed out by `POST /v1/uploads`, filled by the form POST.

A slot is `runway://<id>`; its form fields carry a policy (base64 JSON with the key and the
expiry) and an HMAC signature over the policy, like an S3 presigned POST. Until the file
arrives, or after the TTL, the `runway://` URI is not usable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

URI_PREFIX = "runway://"


@dataclass
class Upload:
    id: str
    filename: str
    expires_at: float  # unix time
    data: bytes | None = None
    content_type: str | None = None

    @property
    def key(self) -> str:
        return f"ephemeral/{self.id}/{self.filename}"

    @property
    def uri(self) -> str:
        return f"{URI_PREFIX}{self.id}"


class UploadStore:
    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._uploads: dict[str, Upload] = {}

    def open(self, filename: str) -> Upload:
        upload = Upload(uuid.uuid4().hex, filename, time.time() + self._ttl_s)
        self._uploads[upload.id] = upload
        return upload

    def form_fields(self, upload: Upload, secret: str) -> dict[str, str]:
        policy = base64.b64encode(
            json.dumps({"key": upload.key, "expiration": upload.expires_at}).encode()
        ).decode()
        return {"key": upload.key, "policy": policy, "x-amz-signature": sign(secret, policy)}

    def accept(
        self, key: str, policy: str, signature: str, secret: str
    ) -> tuple[Upload | None, str]:
        """The slot a form POST fills, or (None, S3 error code)."""
        if not hmac.compare_digest(sign(secret, policy), signature):
            return None, "SignatureDoesNotMatch"
        try:
            claims = json.loads(base64.b64decode(policy))
        except ValueError:
            return None, "InvalidPolicyDocument"
        if claims.get("key") != key:
            return None, "AccessDenied"
        upload_id = key.split("/")[1] if key.count("/") >= 2 else ""
        upload = self._uploads.get(upload_id)
        if upload is None or time.time() > float(claims.get("expiration", 0)):
            return None, "AccessDenied"
        return upload, ""

    def lookup(self, uri: str) -> Upload | None:
        """A filled, unexpired upload for a `runway://` URI."""
        upload = self._uploads.get(uri.removeprefix(URI_PREFIX))
        if upload is None or upload.data is None or time.time() > upload.expires_at:
            return None
        return upload


def sign(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()
