"""The local broker's object store: a small S3 server for tansu, with conditional writes.

tansu's S3 storage engine keeps a partition's records as one object per batch
(``.../records/<offset:020>.batch``) and its state (a partition's watermark, the cluster's
metadata, each consumer group) as JSON objects that it updates optimistically: read the object
and its ETag, change it, write it back with ``If-Match: <etag>``, and on ``412 Precondition
Failed`` read again and retry; a batch is written with ``If-None-Match: *`` so that an offset is
never given twice. A fetch lists ``.../records/`` and parses the first 20 characters of each
name as an offset. So the store must honour S3's conditional writes, list only complete
objects and never serve a read cut by a write.

This store was nanio (the services' S3 server) with a layer adding those three. Measured under
`bench/pipeline.py` that store answered a batch GET in 19 ms on average and a watermark PUT in
11-15 ms: it writes every object through a thread pool with an ``fsync`` and keeps its metadata
in side files, and every hop through the broker waited on it. This one keeps every object in
memory (bytes, ETag, time) with a sorted index of keys per bucket, and serves each request in
the event loop without awaiting between its check and its change, so a conditional write is
atomic, a listing is a range of the index and a read is one object's bytes as they were.

- **Writes** go to a file (``<data-dir>/<bucket>/<key>``, written beside it and renamed in, so a
  file is never half written) before the answer. They are not ``fsync``ed: a kill -9 of the store
  or the broker loses nothing (the page cache holds it), a power cut may lose the last writes,
  as it may with Kafka's own defaults (``log.flush.*`` unset: Kafka leaves flushing to the OS).
- **Start**: every file under the data directory is loaded (ETag = the MD5 of its bytes, as S3
  gives a single-part object); nanio's side files (``.nanio-meta``) and staging files (``.tmp.``)
  of a store directory written by the earlier version are skipped.
- **Requests** are checked with SigV4 (nanio's verifier, the same keys); the subset served is
  what tansu's client sends: ListObjectsV2 (prefix, delimiter, start-after, continuation-token,
  max-keys), GET/HEAD (with ``Range``, ``If-Match``, ``If-None-Match``), PUT (with ``If-Match``,
  ``If-None-Match``; the payload checked against ``x-amz-content-sha256``), DELETE, multi-object
  delete, create/head/delete/list bucket. Anything else gets ``501 NotImplemented`` and a log
  line, so a client that needs more fails loudly, not silently.

    NANIO_ACCESS_KEY=... NANIO_SECRET_KEY=... python scripts/broker_store.py \\
        --data-dir DIR --host 127.0.0.1 --port 19010 [--no-access-log]

It needs nanio (for the signature check and its XML), starlette and uvicorn; scripts/infra.sh
runs it with the Python of its tools' virtual environment.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import logging
import os
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

log = logging.getLogger("broker_store")

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
MAX_OBJECT_BYTES = 256 * 1024 * 1024
GAP_GRACE = timedelta(seconds=2)  # see until_young_gap
SKIPPED_DIRS = (".nanio-meta", ".nanio")  # an earlier version's side files
STAGING_PREFIX = ".tmp."  # an earlier version's uploads in flight
WRITES_DIR = ".writes"  # this store's files being written, renamed in when complete
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# ----------------------------------------------------------------------------- pure rules


def split_path(path: str) -> tuple[str, str]:
    """``(bucket, key)`` of a path-style URL path; empty strings for what it does not name
    (the key of a bucket's URL, both for the service's)."""
    bucket, _, key = path.lstrip("/").partition("/")
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


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a file under its bucket's directory, or None when it can."""
    if len(key.encode()) > 1024:
        return "longer than 1024 bytes"
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' path segment"
    if any(p.startswith((*SKIPPED_DIRS, STAGING_PREFIX)) for p in parts):
        return "a reserved name"
    if "\x00" in key:
        return "a NUL character"
    return None


def byte_range(value: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``bytes=`` range within ``size``; None when unsatisfiable.
    Raises ValueError for a header that is not one range."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError(value)
    first_s, _, last_s = spec.strip().partition("-")
    if first_s == "":  # the last N bytes
        n = int(last_s)
        if n <= 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


def batch_span(key: str, data: bytes) -> tuple[int, int] | None:
    """``(first offset, offsets it holds)`` of one of tansu's record batch objects
    (``.../records/<offset:020>.batch``, a Kafka v2 RecordBatch whose ``lastOffsetDelta`` is
    bytes 23-26), or None for any other object."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".batch") or len(data) < 61 or data[16] != 2:
        return None
    try:
        first = int(name[:20])
    except ValueError:
        return None
    return first, int.from_bytes(data[23:27], "big", signed=True) + 1


def until_young_gap(
    entries: list[tuple[str, Obj]], now: datetime, grace: timedelta
) -> list[tuple[str, Obj]]:
    """A records listing cut before the first batch that follows a missing offset, while that
    batch is younger than ``grace``.

    tansu takes a produce's offsets (the partition's watermark, a conditional write) before it
    writes the batch; two produces to one partition that overlap can land their batches out of
    order, and a fetch that lists the partition between the two sees offset N + k but not N.
    It returns N + k and the consumer moves past N: a record never delivered to its group
    (seen with `bench/broker_storage.py` once this store became fast enough for produces to
    overlap). Kafka never shows a reader offsets past one not yet written; this makes the
    listing say the same. A gap older than ``grace`` is one no write will fill (a broker killed
    between taking an offset and writing its batch): it is shown, or the partition would stop
    there forever."""
    out: list[tuple[str, Obj]] = []
    expected: int | None = None
    for key, obj in entries:
        span = batch_span(key, obj.data)
        if span is None:
            out.append((key, obj))
            continue
        first, count = span
        if expected is not None and first > expected and now - obj.modified < grace:
            break
        out.append((key, obj))
        expected = first + count
    return out


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_token(token: str) -> str:
    return base64.urlsafe_b64decode(token.encode()).decode()


# ----------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class Obj:
    data: bytes
    etag: str  # quoted
    modified: datetime


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class Bucket:
    """One bucket's objects and a sorted index of their keys."""

    def __init__(self, name: str, created: datetime) -> None:
        self.name = name
        self.created = created
        self.objects: dict[str, Obj] = {}
        self.keys: list[str] = []

    def put(self, key: str, obj: Obj) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def delete(self, key: str) -> bool:
        if self.objects.pop(key, None) is None:
            return False
        i = bisect.bisect_left(self.keys, key)
        del self.keys[i]
        return True

    def list(
        self, prefix: str, delimiter: str | None, after: str, max_keys: int
    ) -> tuple[list[tuple[str, Obj]], list[str], str | None]:
        """Up to ``max_keys`` entries (objects and common prefixes) after ``after``, in key
        order, and the key to resume after when there are more."""
        contents: list[tuple[str, Obj]] = []
        prefixes: list[str] = []
        i = bisect.bisect_left(self.keys, prefix)
        if after:
            if delimiter and after.endswith(delimiter) and after.startswith(prefix):
                after += "\U0010ffff"  # resuming after a common prefix: past all its keys
            i = max(i, bisect.bisect_right(self.keys, after))
        last: str | None = None
        while i < len(self.keys):
            key = self.keys[i]
            if not key.startswith(prefix):
                break
            if len(contents) + len(prefixes) == max_keys:
                return contents, prefixes, last
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    prefixes.append(common)
                    last = common
                    # past every key under this common prefix
                    i = bisect.bisect_left(self.keys, common + "\U0010ffff")
                    continue
            contents.append((key, self.objects[key]))
            last = key
            i += 1
        return contents, prefixes, None


class Store:
    """The buckets, in memory, each object also a file under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.buckets: dict[str, Bucket] = {}
        self._writes = root / WRITES_DIR
        self._writes.mkdir(parents=True, exist_ok=True)
        for leftover in self._writes.iterdir():  # writes a crash cut short: never acknowledged
            leftover.unlink(missing_ok=True)
        self._load()

    def _load(self) -> None:
        for bdir in sorted(self.root.iterdir()):
            if not bdir.is_dir() or bdir.name == WRITES_DIR or bdir.name.startswith("."):
                continue
            created = datetime.fromtimestamp(bdir.stat().st_mtime, UTC)
            bucket = self.buckets[bdir.name] = Bucket(bdir.name, created)
            for dirpath, dirnames, filenames in os.walk(bdir):
                dirnames[:] = [d for d in dirnames if not d.startswith(SKIPPED_DIRS)]
                for name in filenames:
                    if name.startswith(STAGING_PREFIX):
                        continue
                    path = Path(dirpath) / name
                    key = path.relative_to(bdir).as_posix()
                    data = path.read_bytes()
                    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                    bucket.put(key, Obj(data, _etag(data), modified))
        count = sum(len(b.objects) for b in self.buckets.values())
        log.warning("loaded %d objects in %d buckets from %s", count, len(self.buckets), self.root)

    def create_bucket(self, name: str) -> bool:
        if name in self.buckets:
            return False
        (self.root / name).mkdir(exist_ok=True)
        self.buckets[name] = Bucket(name, datetime.now(UTC))
        return True

    def delete_bucket(self, name: str) -> None:
        del self.buckets[name]
        for dirpath, _dirs, files in os.walk(self.root / name, topdown=False):
            for f in files:
                Path(dirpath, f).unlink(missing_ok=True)
            Path(dirpath).rmdir()

    def write(self, bucket: Bucket, key: str, data: bytes) -> Obj:
        """Write the file (complete before it is renamed in), then the object."""
        path = self.root / bucket.name / key
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = self._writes / uuid.uuid4().hex
        with open(staged, "wb") as f:
            f.write(data)
        os.replace(staged, path)
        obj = Obj(data, _etag(data), datetime.now(UTC))
        bucket.put(key, obj)
        return obj

    def remove(self, bucket: Bucket, key: str) -> None:
        if bucket.delete(key):
            path = self.root / bucket.name / key
            path.unlink(missing_ok=True)
            parent = path.parent
            stop = self.root / bucket.name
            while parent != stop:  # drop directories left empty
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent


# ----------------------------------------------------------------------------- HTTP


class S3Failure(Exception):
    def __init__(self, status: int, code: str, message: str, resource: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.resource = status, code, message, resource

    def body(self) -> bytes:
        extra = f"<Resource>{escape(self.resource)}</Resource>" if self.resource else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Error>'
            f"<Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"{extra}</Error>"
        ).encode()


def _not_implemented(what: str) -> S3Failure:
    log.warning("not implemented: %s", what)
    return S3Failure(501, "NotImplemented", f"This store does not implement {what}.")


def _http_date(at: datetime) -> str:
    return format_datetime(at, usegmt=True)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _xml(*parts: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>' + "".join(parts)).encode()


Response = tuple[int, list[tuple[bytes, bytes]], bytes]
_XML_TYPE = [(b"content-type", b"application/xml")]


class App:
    """The ASGI application: signature check, then one synchronous step per request."""

    def __init__(self, store: Store, region: str) -> None:
        from nanio.auth import sigv4
        from nanio.auth.credentials import EnvCredentialResolver
        from nanio.errors import S3Error

        self.store = store
        self.region = region
        self.gaps_hidden = 0  # listings cut by until_young_gap
        self._secret = EnvCredentialResolver().resolve
        self._sigv4 = sigv4
        self._sigv4_error = S3Error

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # served with lifespan="off": nothing else arrives
            return
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        try:
            payload_hash = self._verify(method, path, scope, headers)
            body = b""
            if method in ("PUT", "POST"):
                body = await _read_body(receive, headers)
                _check_payload(body, payload_hash)
            status, out_headers, out = self.handle(method, path, scope, headers, body)
        except S3Failure as exc:
            status, out_headers, out = exc.status, _XML_TYPE, exc.body()
        except Exception:  # a defect here must answer, not drop the broker's connection
            log.exception("%s %s failed", method, path)
            failure = S3Failure(500, "InternalError", "The store failed; see its log.")
            status, out_headers, out = 500, _XML_TYPE, failure.body()
        # a HEAD says what a GET would send
        out_headers = [*out_headers, (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else out})

    def _verify(
        self, method: str, path: str, scope: dict[str, Any], headers: dict[str, str]
    ) -> str:
        query = scope.get("query_string", b"").decode("latin-1")
        if "X-Amz-Algorithm=" in query:
            verify = self._sigv4.verify_presigned_url
        elif "authorization" in headers:
            verify = self._sigv4.verify_header_auth
        else:
            raise S3Failure(403, "AccessDenied", "Missing Authorization header.", path)
        try:
            verified = verify(
                method=method, path=path, query=query, headers=headers, secret_lookup=self._secret
            )
        except self._sigv4_error as exc:
            raise S3Failure(exc.http_status, exc.code, exc.message_text, path) from exc
        if verified.is_streaming:
            raise _not_implemented("aws-chunked (streaming) payloads")
        return str(verified.payload_hash)

    # -- routing

    def handle(
        self, method: str, path: str, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> Response:
        query = dict(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        bucket_name, key = split_path(path)
        if not bucket_name:
            if method == "GET":
                return self.list_buckets()
            raise _not_implemented(f"{method} on the service")
        if not key:
            return self.on_bucket(method, bucket_name, query, body)
        bucket = self._bucket(bucket_name)
        if "uploads" in query or "uploadId" in query or "partNumber" in query:
            raise _not_implemented("multipart uploads")
        if "x-amz-copy-source" in headers:
            raise _not_implemented("copying objects")
        problem = key_problem(key)
        if problem is not None:
            raise S3Failure(400, "InvalidObjectName", f"The key has {problem}.", path)
        if method in ("GET", "HEAD"):
            return self.get(bucket, key, headers, path)
        if method == "PUT":
            return self.put(bucket, key, headers, body, path)
        if method == "DELETE":
            self.store.remove(bucket, key)
            return 204, [], b""
        raise _not_implemented(f"{method} on an object")

    def _bucket(self, name: str) -> Bucket:
        bucket = self.store.buckets.get(name)
        if bucket is None:
            raise S3Failure(404, "NoSuchBucket", "The specified bucket does not exist.", name)
        return bucket

    def on_bucket(self, method: str, name: str, query: dict[str, str], body: bytes) -> Response:
        if method == "PUT" and not query:
            if not _BUCKET_NAME.match(name):
                raise S3Failure(400, "InvalidBucketName", "The bucket name is not valid.", name)
            if not self.store.create_bucket(name):
                raise S3Failure(
                    409, "BucketAlreadyOwnedByYou", "You already own this bucket.", name
                )
            return 200, [(b"location", f"/{name}".encode())], b""
        bucket = self._bucket(name)
        if method == "HEAD":
            return 200, [(b"x-amz-bucket-region", self.region.encode())], b""
        if method == "GET" and "location" in query:
            return (
                200,
                _XML_TYPE,
                _xml(
                    f'<LocationConstraint xmlns="{S3_NS}">',
                    f"{escape(self.region)}</LocationConstraint>",
                ),
            )
        if method == "GET" and query.get("list-type") == "2":
            return self.list_objects(bucket, query)
        if method == "GET" and not (
            set(query) - {"prefix", "delimiter", "max-keys", "encoding-type"}
        ):
            raise _not_implemented("ListObjects version 1 (list-type=2 is served)")
        if method == "POST" and "delete" in query:
            return self.delete_many(bucket, body)
        if method == "DELETE" and not query:
            if bucket.keys:
                raise S3Failure(
                    409, "BucketNotEmpty", "The bucket you tried to delete is not empty.", name
                )
            self.store.delete_bucket(name)
            return 204, [], b""
        raise _not_implemented(f"{method} on a bucket with {sorted(query)}")

    # -- operations

    def list_buckets(self) -> Response:
        entries = "".join(
            f"<Bucket><Name>{escape(b.name)}</Name><CreationDate>{_iso(b.created)}</CreationDate></Bucket>"
            for b in sorted(self.store.buckets.values(), key=lambda b: b.name)
        )
        return (
            200,
            _XML_TYPE,
            _xml(
                f'<ListAllMyBucketsResult xmlns="{S3_NS}"><Owner><ID>broker-store</ID></Owner>',
                f"<Buckets>{entries}</Buckets></ListAllMyBucketsResult>",
            ),
        )

    def list_objects(self, bucket: Bucket, query: dict[str, str]) -> Response:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter") or None
        encoding = query.get("encoding-type")
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        try:
            max_keys = max(0, min(MAX_KEYS, int(query.get("max-keys", MAX_KEYS))))
            after = decode_token(token) if token else start_after
        except ValueError as exc:
            raise S3Failure(400, "InvalidArgument", "A listing argument is not valid.") from exc
        contents, prefixes, resume = bucket.list(prefix, delimiter, after, max_keys)
        if prefix.endswith("/records/"):
            kept = until_young_gap(contents, datetime.now(UTC), GAP_GRACE)
            if len(kept) < len(contents):
                contents, prefixes, resume = kept, [], None
                self.gaps_hidden += 1
                if self.gaps_hidden in (1, 10, 100) or self.gaps_hidden % 1000 == 0:
                    log.warning("%d listings cut before a batch not yet written", self.gaps_hidden)

        def name(value: str) -> str:
            return escape(quote(value, safe="") if encoding == "url" else value)

        parts = [
            f'<ListBucketResult xmlns="{S3_NS}"><Name>{escape(bucket.name)}</Name>',
            f"<Prefix>{name(prefix)}</Prefix>",
            f"<Delimiter>{name(delimiter)}</Delimiter>" if delimiter else "",
            f"<MaxKeys>{max_keys}</MaxKeys>",
            f"<EncodingType>{escape(encoding)}</EncodingType>" if encoding else "",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
            f"<IsTruncated>{'true' if resume is not None else 'false'}</IsTruncated>",
            f"<ContinuationToken>{escape(token)}</ContinuationToken>" if token else "",
            f"<NextContinuationToken>{encode_token(resume)}</NextContinuationToken>"
            if resume is not None
            else "",
            f"<StartAfter>{name(start_after)}</StartAfter>" if start_after else "",
        ]
        parts += [
            f"<Contents><Key>{name(k)}</Key><LastModified>{_iso(o.modified)}</LastModified>"
            f"<ETag>{escape(o.etag)}</ETag><Size>{len(o.data)}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for k, o in contents
        ]
        parts += [f"<CommonPrefixes><Prefix>{name(p)}</Prefix></CommonPrefixes>" for p in prefixes]
        parts.append("</ListBucketResult>")
        return 200, _XML_TYPE, _xml(*parts)

    def get(self, bucket: Bucket, key: str, headers: dict[str, str], path: str) -> Response:
        obj = bucket.objects.get(key)
        if obj is None:
            raise S3Failure(404, "NoSuchKey", "The specified key does not exist.", path)
        meta = [
            (b"etag", obj.etag.encode()),
            (b"last-modified", _http_date(obj.modified).encode()),
            (b"content-type", b"application/octet-stream"),
            (b"accept-ranges", b"bytes"),
        ]
        failed = failed_precondition(headers, obj.etag)  # If-Match is evaluated first
        if failed == "If-Match":
            raise S3Failure(412, "PreconditionFailed", "If-Match did not hold.", path)
        if failed == "If-None-Match":
            return 304, meta, b""
        wanted = headers.get("range")
        if wanted:
            try:
                span = byte_range(wanted, len(obj.data))
            except ValueError:  # not one byte range: ignored, as S3 does
                return 200, meta, obj.data
            if span is None:
                raise S3Failure(
                    416, "InvalidRange", "The requested range is not satisfiable.", path
                )
            first, last = span
            meta.append((b"content-range", f"bytes {first}-{last}/{len(obj.data)}".encode()))
            return 206, meta, obj.data[first : last + 1]
        return 200, meta, obj.data

    def put(
        self, bucket: Bucket, key: str, headers: dict[str, str], body: bytes, path: str
    ) -> Response:
        current = bucket.objects.get(key)
        failed = failed_precondition(headers, current.etag if current else None)
        if failed is not None:
            raise S3Failure(
                412,
                "PreconditionFailed",
                "At least one of the preconditions you specified did not hold.",
                path,
            )
        obj = self.store.write(bucket, key, body)
        return 200, [(b"etag", obj.etag.encode())], b""

    def delete_many(self, bucket: Bucket, body: bytes) -> Response:
        try:
            root = ET.fromstring(body)  # noqa: S314 (a private store's own client)
        except ET.ParseError as exc:
            raise S3Failure(
                400, "MalformedXML", "The XML you provided was not well-formed."
            ) from exc
        quiet = any(
            (e.text or "").strip() == "true" for e in root.iter() if e.tag.endswith("Quiet")
        )
        deleted: list[str] = []
        for element in root.iter():
            if element.tag.endswith("Key") and element.text:
                self.store.remove(bucket, element.text)
                deleted.append(element.text)
        entries = (
            "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in deleted)
        )
        return 200, _XML_TYPE, _xml(f'<DeleteResult xmlns="{S3_NS}">{entries}</DeleteResult>')


async def _read_body(receive: Any, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and int(declared) > MAX_OBJECT_BYTES:
        raise S3Failure(400, "EntityTooLarge", "The object is larger than this store allows.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise S3Failure(400, "IncompleteBody", "The client went away before the body ended.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_OBJECT_BYTES:
            raise S3Failure(400, "EntityTooLarge", "The object is larger than this store allows.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if declared is not None and int(declared) != len(body):
        raise S3Failure(400, "IncompleteBody", "The body is shorter than its Content-Length.")
    return body


def _check_payload(body: bytes, payload_hash: str) -> None:
    """The body against the SHA-256 the request was signed with (unless it signed none:
    ``UNSIGNED-PAYLOAD``)."""
    if not re.fullmatch(r"[0-9a-f]{64}", payload_hash):
        return
    if hashlib.sha256(body).hexdigest() != payload_hash:
        raise S3Failure(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )


# ----------------------------------------------------------------------------- serving


def build_app(data_dir: Path, region: str) -> App:
    """The store for ``data_dir`` (loaded now)."""
    return App(Store(data_dir), region)


KEEP_ALIVE_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description="S3 for the local broker (see docstring)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19010)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    import uvicorn

    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(args.data_dir.resolve(), args.region)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        log_level="warning",
        lifespan="off",
        # Longer than tansu's HTTP client keeps an idle connection (90 s): the client closes
        # first, so it never sends on a connection this server is closing (uvicorn's 5 s
        # default lost a PUT to "connection reset", which tansu does not retry).
        timeout_keep_alive=KEEP_ALIVE_S,
    )


if __name__ == "__main__":
    main()
