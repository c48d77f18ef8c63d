"""Signed, expiring output URLs and the download endpoint behind them.

URL: `{base}/_outputs/{task_id}/0.mp4?Expires=<unix seconds>&Signature=<hex HMAC-SHA256 of
"{path}\\n{Expires}">`. Past `Expires` the answer is 403 with an S3-style "Request has expired"
body; retrieving the task again hands out a fresh URL. Downloads honour `Range` (one range,
206) and `HEAD`; `Scenario.download_faults` truncates or cuts the next N downloads, and
`Scenario.output_pad_bytes` appends an MP4 `free` box (still a valid file) to make outputs bigger.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from runway_sim.errors import DropConnection, s3_error
from runway_sim.state import SimState, get_state
from runway_sim.tasks import Status

CHUNK = 64 * 1024


def _signature(secret: str, path: str, expires: str) -> str:
    return hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_url(secret: str, base: str, task_id: str, index: int, ttl_s: float) -> str:
    path = f"/_outputs/{task_id}/{index}.mp4"
    expires = f"{time.time() + ttl_s:.3f}"
    return f"{base}{path}?Expires={expires}&Signature={_signature(secret, path, expires)}"


def check_signature(
    secret: str, path: str, expires: str | None, signature: str | None, now: float
) -> Literal["ok", "expired", "invalid"]:
    if not expires or not signature:
        return "invalid"
    if not hmac.compare_digest(_signature(secret, path, expires), signature):
        return "invalid"
    try:
        return "ok" if float(expires) >= now else "expired"
    except ValueError:
        return "invalid"


class OutputBlob:
    """The MP4 bytes plus an optional trailing `free` box of `pad` bytes (0 or >= 8)."""

    def __init__(self, mp4: bytes, pad: int) -> None:
        self.mp4 = mp4
        self.pad = pad if pad >= 8 else 0
        self.size = len(mp4) + self.pad

    def _pad_header(self) -> bytes:
        return self.pad.to_bytes(4, "big") + b"free"

    def chunks(self, start: int, end: int) -> list[tuple[int, int]]:
        """Byte spans [start, end) split into CHUNK-sized pieces."""
        return [(pos, min(pos + CHUNK, end)) for pos in range(start, end, CHUNK)]

    def read(self, start: int, end: int) -> bytes:
        head = self.mp4[start:end] if start < len(self.mp4) else b""
        if end <= len(self.mp4):
            return head
        pad_start = max(start, len(self.mp4)) - len(self.mp4)
        pad_end = end - len(self.mp4)
        header = self._pad_header()
        piece = bytearray()
        if pad_start < len(header):
            piece += header[pad_start : min(pad_end, len(header))]
        zeros = pad_end - max(pad_start, len(header))
        if zeros > 0:
            piece += bytes(zeros)
        return head + bytes(piece)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["bad"] | None:
    """[start, end) of a single `Range`; None for none (or several); "bad" if unsatisfiable."""
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:
        length = int(match[2])
        return (max(0, size - length), size) if length > 0 and size > 0 else "bad"
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return "bad"
    return start, end


async def download(task_id: str, name: str, request: Request) -> Response:
    state = get_state(request)
    verdict = check_signature(
        state.settings.signing_secret,
        request.url.path,
        request.query_params.get("Expires"),
        request.query_params.get("Signature"),
        time.time(),
    )
    if verdict == "invalid":
        return s3_error(403, "SignatureDoesNotMatch", "The request signature is not valid.")
    if verdict == "expired":
        state.tag_fault(task_id, "output_url_expired")
        expires = datetime.fromtimestamp(float(request.query_params["Expires"]), UTC)
        return s3_error(
            403,
            "AccessDenied",
            "Request has expired",
            Expires=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ServerTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    task = state.engine.get(task_id, state.clock())
    future = state.outputs.get(task_id)
    if task is None or task.status is not Status.SUCCEEDED or future is None or name != "0.mp4":
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
    try:
        mp4 = await state.renderer.result(future)
    except Exception as exc:  # a render that failed is a storage-side error
        return s3_error(500, "InternalError", f"Output unavailable: {exc}")
    blob = OutputBlob(mp4, state.scenario.output_pad_bytes)
    return _serve(state, request, task_id, blob, mp4)


def _serve(
    state: SimState, request: Request, task_id: str, blob: OutputBlob, mp4: bytes
) -> Response:
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": "video/mp4",
        "ETag": '"' + hashlib.md5(mp4, usedforsecurity=False).hexdigest() + '"',
        "Cache-Control": "private, max-age=0",
    }
    span = parse_range(request.headers.get("range"), blob.size)
    if span == "bad":
        return s3_error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable.",
            headers={"Content-Range": f"bytes */{blob.size}"},
        )
    start, end = span if span is not None else (0, blob.size)
    status = 206 if span is not None else 200
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(end - start)
        return Response(status_code=status, headers=headers)

    cut_after: int | None = None
    rule = state.scenario.download_faults
    if rule.next_n > 0:
        rule.next_n -= 1
        state.counters.fault(f"download_{rule.mode}")
        state.tag_fault(task_id, f"download_{rule.mode}")
        if rule.mode == "truncate":
            end = min(end, start + rule.after_bytes)
        else:
            cut_after = rule.after_bytes
    headers["Content-Length"] = str(end - start)

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        for lo, hi in blob.chunks(start, end):
            piece = blob.read(lo, hi)
            if cut_after is not None and sent + len(piece) > cut_after:
                yield piece[: cut_after - sent]
                raise DropConnection("download fault: connection cut")
            sent += len(piece)
            yield piece

    return StreamingResponse(body(), status_code=status, headers=headers)


def build_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/_outputs/{task_id}/{name}", download, methods=["GET", "HEAD"])
    return router
