"""The local broker's object store: nanio, with S3's conditional writes and complete listings.

tansu's S3 storage engine keeps a partition's records as one object per batch
(``.../records/<offset:020>.batch``) and its state (a partition's watermark, the cluster's
metadata, each consumer group) as JSON objects that it updates optimistically: read the object
and its ETag, change it, write it back with ``If-Match: <etag>``, and on ``412 Precondition
Failed`` read again and retry; a batch is written with ``If-None-Match: *`` so that an offset is
never given twice. A fetch lists ``.../records/`` and parses the first 20 characters of each
name as an offset.

nanio (0.1.7) differs from S3 in three ways that break this:

1. It ignores ``If-Match`` and ``If-None-Match`` on PUT. Two produces to one partition that
   overlap both read watermark N, both write N + 1 and both succeed; both then write the batch
   at offset N and the second silently replaces the first: an acknowledged record is lost, and
   consumer-group state loses updates the same way.
2. It stages each upload as ``<dir>/.tmp.<uuid hex>`` beside the final object and lists that
   file while the upload runs (only names starting with ``.nanio`` are hidden). A fetch that
   lists ``records/`` during a produce gets ``.tmp.26ae90b5a4334269...``, tansu's
   ``i64::from_str(&name[0..20])`` fails with ``ParseInt(ParseIntError { kind: InvalidDigit })``,
   the fetch fails and tansu closes the client's connection.
3. A GET reads the object's metadata (size, ETag) before it opens the file; a PUT of the same
   key that lands in between serves the new bytes cut to the old size under the old ETag.

This process serves nanio's own application (its signature checks included) with one layer
added after the signature check, which, per object key:

- makes a PUT, a DELETE or a multipart completion wait for every request on that key to finish
  and hold it alone, and lets GETs and HEADs on it share it (a readers-writer lock), so no
  write interleaves with a read or another write of the same key;
- answers ``412 PreconditionFailed`` to a PUT whose ``If-None-Match`` / ``If-Match`` does not hold
  against the object's current ETag (RFC 9110 preconditions, as S3 evaluates them);
- and drops nanio's staging entries (a last path segment starting with ``.tmp.``) from bucket
  listings.

Everything else reaches nanio unchanged. The store belongs to the broker alone (no other
client writes its bucket); bulk deletes (``POST ?delete``) take no per-key lock (tansu uses them
only when a topic is deleted).

    NANIO_ACCESS_KEY=... NANIO_SECRET_KEY=... python scripts/broker_store.py \\
        --data-dir DIR --host 127.0.0.1 --port 19010 [--no-access-log]

It needs nanio, starlette and uvicorn (nanio's own dependencies); scripts/infra.sh runs it with
the Python of its tools' virtual environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STAGING_PREFIX = ".tmp."
_CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.DOTALL)
_KEY = re.compile(rb"<Key>(.*?)</Key>", re.DOTALL)
_KEY_COUNT = re.compile(rb"<KeyCount>(\d+)</KeyCount>")
_PRECONDITION_FAILED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
    b"<Message>At least one of the preconditions you specified did not hold.</Message>"
    b"<Condition>%s</Condition><Resource>%s</Resource></Error>"
)


# ----------------------------------------------------------------------------- pure rules


def object_key(path: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of a path-style object URL path, None for a bucket or the service."""
    bucket, sep, key = path.lstrip("/").partition("/")
    if not bucket or not sep or not key:
        return None
    return bucket, key


def _etags(value: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match value, weak prefixes dropped."""
    tags = []
    for raw in value.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag:
            tags.append(tag)
    return tags


def failed_precondition(headers: dict[str, str], current_etag: str | None) -> str | None:
    """The header whose condition does not hold for a write, or None when the write may go on.

    ``current_etag`` is the object's quoted ETag, or None when the object does not exist.
    ``If-Match`` holds when the object exists and its ETag is listed (or the value is ``*``);
    ``If-None-Match`` holds when the object does not exist (``*``) or its ETag is not listed.
    """
    if_match = headers.get("if-match")
    if if_match is not None:
        tags = _etags(if_match)
        if current_etag is None or ("*" not in tags and current_etag not in tags):
            return "If-Match"
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = _etags(if_none_match)
        if current_etag is not None and ("*" in tags or current_etag in tags):
            return "If-None-Match"
    return None


def is_staging_key(key: str) -> bool:
    """Whether a listed key is one of nanio's in-flight uploads, not an object."""
    return key.rsplit("/", 1)[-1].startswith(STAGING_PREFIX)


def drop_staging_entries(body: bytes, *, url_encoded: bool) -> bytes:
    """A ListObjects(V2) XML body without its staging entries (``KeyCount`` adjusted)."""
    dropped = 0

    def keep(match: re.Match[bytes]) -> bytes:
        nonlocal dropped
        key = _KEY.search(match.group(0))
        if key is None:
            return match.group(0)
        text = key.group(1).decode("utf-8")
        if is_staging_key(unquote(text) if url_encoded else text):
            dropped += 1
            return b""
        return match.group(0)

    out = _CONTENTS.sub(keep, body)
    if dropped:
        out = _KEY_COUNT.sub(
            lambda m: b"<KeyCount>%d</KeyCount>" % max(0, int(m.group(1)) - dropped), out, count=1
        )
    return out


# ----------------------------------------------------------------------------- key locks


@dataclass
class _RWLock:
    readers: int = 0
    writer: bool = False
    writers_waiting: int = 0
    users: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class KeyLocks:
    """A readers-writer lock per key; writers go first once they wait (no writer starvation).

    Entries exist only while someone holds or waits for them, so the table stays as small as
    the number of keys in use at one moment.
    """

    def __init__(self) -> None:
        self._locks: dict[str, _RWLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, exclusive: bool) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, _RWLock())
        lock.users += 1
        try:
            async with lock.changed:
                if exclusive:
                    lock.writers_waiting += 1
                    try:
                        await lock.changed.wait_for(lambda: not lock.writer and not lock.readers)
                    finally:
                        lock.writers_waiting -= 1
                    lock.writer = True
                else:
                    await lock.changed.wait_for(
                        lambda: not lock.writer and not lock.writers_waiting
                    )
                    lock.readers += 1
            try:
                yield
            finally:
                async with lock.changed:
                    if exclusive:
                        lock.writer = False
                    else:
                        lock.readers -= 1
                    lock.changed.notify_all()
        finally:
            lock.users -= 1
            if lock.users == 0:
                del self._locks[key]


# ----------------------------------------------------------------------------- the layer


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class ConditionalWrites:
    """ASGI layer (placed after nanio's signature check) with the behaviour described above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.locks = KeyLocks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        target = object_key(scope["path"])
        if target is None:
            if method == "GET":
                await self._listing(scope, receive, send, query)
            else:
                await self.app(scope, receive, send)
            return
        if method == "PUT" and "partNumber" in query:
            await self.app(scope, receive, send)  # a part of a multipart upload, not an object
            return
        exclusive = method in ("PUT", "DELETE", "POST")
        async with self.locks.hold("/".join(target), exclusive=exclusive):
            if method == "PUT":
                headers = _headers(scope)
                if "if-match" in headers or "if-none-match" in headers:
                    failed = failed_precondition(headers, await self._current_etag(scope))
                    if failed is not None:
                        await self._precondition_failed(send, failed, scope["path"])
                        return
            await self.app(scope, receive, send)

    async def _current_etag(self, scope: Scope) -> str | None:
        """The object's ETag as nanio reports it now (a HEAD past the signature check)."""
        head: dict[str, Any] = dict(scope)
        head["method"] = "HEAD"
        head["query_string"] = b""
        status = 0
        etag: str | None = None

        async def capture(message: Message) -> None:
            nonlocal status, etag
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"etag":
                        etag = v.decode("latin-1")

        await self.app(head, _empty_body, capture)
        if status == 404:
            return None
        if status != 200 or etag is None:
            raise RuntimeError(f"HEAD {scope['path']} answered {status} while checking a condition")
        return etag

    @staticmethod
    async def _precondition_failed(send: Send, condition: str, resource: str) -> None:
        body = _PRECONDITION_FAILED % (condition.encode(), resource.encode("utf-8"))
        await send(
            {
                "type": "http.response.start",
                "status": 412,
                "headers": [
                    (b"content-type", b"application/xml"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _listing(
        self, scope: Scope, receive: Receive, send: Send, query: dict[str, list[str]]
    ) -> None:
        """A bucket GET: buffer nanio's answer, drop staging entries from a listing."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        assert start is not None
        body = b"".join(chunks)
        if start["status"] == 200 and b"<ListBucketResult" in body[:400]:
            url_encoded = query.get("encoding-type", [""])[0] == "url"
            body = drop_staging_entries(body, url_encoded=url_encoded)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- serving


def build_app(data_dir: Path, region: str) -> Any:
    """nanio's application for ``data_dir`` with ``ConditionalWrites`` after its signature check."""
    from nanio.app import build_app as build_nanio
    from nanio.auth.credentials import EnvCredentialResolver
    from nanio.config import Settings
    from starlette.middleware import Middleware

    settings = Settings(data_dir=data_dir, region=region, credentials=EnvCredentialResolver())
    app = build_nanio(settings)
    # Starlette builds its middleware stack on the first request, outermost first:
    # appended here, the layer runs after nanio's SigV4 check and before its routes.
    app.user_middleware.append(Middleware(ConditionalWrites))
    return app


KEEP_ALIVE_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description="nanio with S3 conditional writes (see docstring)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19010)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args()

    import uvicorn

    app = build_app(args.data_dir.resolve(), args.region)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        log_level="warning",
        # Longer than tansu's HTTP client keeps an idle connection (90 s): the client closes
        # first, so it never sends on a connection this server is closing (uvicorn's 5 s
        # default lost a PUT to "connection reset", which tansu does not retry).
        timeout_keep_alive=KEEP_ALIVE_S,
    )


if __name__ == "__main__":
    main()
