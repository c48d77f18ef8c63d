"""The broker's object store (scripts/broker_store.py): the S3 subset tansu needs, conditionally.

The rules are tested as functions; the behaviour is tested over HTTP against the real store
that scripts/infra.sh starts for a private stack. Set
``VIDGEN_TEST_KAFKA_STORAGE=s3-direct`` to run the same HTTP tests against plain nanio: the
conditional-write, listing and read-consistency tests then fail, which is the defect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "vidgen-dev-access-key"
SECRET_KEY = "vidgen-dev-secret-key-not-for-production"
REGION = "us-east-1"
BUCKET = "tansu"  # the bucket infra.sh creates in the broker's store


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


store = _load("broker_store")
infra_stack = _load("infra_stack")


# ----------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("headers", "current", "failed"),
    [
        ({"if-none-match": "*"}, None, None),
        ({"if-none-match": "*"}, '"a"', "If-None-Match"),
        ({"if-none-match": '"a"'}, '"a"', "If-None-Match"),
        ({"if-none-match": '"a"'}, '"b"', None),
        ({"if-match": '"a"'}, '"a"', None),
        ({"if-match": 'W/"a"'}, '"a"', None),
        ({"if-match": '"b", "a"'}, '"a"', None),
        ({"if-match": '"a"'}, '"b"', "If-Match"),
        ({"if-match": '"a"'}, None, "If-Match"),
        ({"if-match": "*"}, None, "If-Match"),
        ({"if-match": "*"}, '"a"', None),
        ({}, '"a"', None),
        ({}, None, None),
    ],
)
def test_preconditions_follow_rfc_9110(
    headers: dict[str, str], current: str | None, failed: str | None
) -> None:
    assert store.failed_precondition(headers, current) == failed


def _bucket(*keys: str) -> object:
    bucket = store.Bucket("b", datetime.now(UTC))
    for k in keys:
        bucket.put(k, store.Obj(k.encode(), '"e"', datetime.now(UTC)))
    return bucket


def test_a_listing_is_a_range_of_the_sorted_keys() -> None:
    bucket = _bucket("p/records/2.batch", "p/records/0.batch", "q/x", "p/records/1.batch", "p/w")
    contents, prefixes, resume = bucket.list("p/records/", None, "", 1000)
    assert [k for k, _ in contents] == [
        "p/records/0.batch",
        "p/records/1.batch",
        "p/records/2.batch",
    ]
    assert (prefixes, resume) == ([], None)
    # pages: resume after the last key given, until no key is left
    first, _, resume = bucket.list("p/", None, "", 2)
    assert [k for k, _ in first] == ["p/records/0.batch", "p/records/1.batch"]
    assert resume == "p/records/1.batch"
    rest, _, resume = bucket.list("p/", None, resume, 2)
    assert [k for k, _ in rest] == ["p/records/2.batch", "p/w"]
    assert resume is None or bucket.list("p/", None, resume, 2)[0] == []
    # start-after a key before the prefix is the whole prefix
    assert len(bucket.list("p/records/", None, "a", 1000)[0]) == 3


def test_a_delimiter_folds_keys_into_common_prefixes() -> None:
    bucket = _bucket("t/a/1", "t/a/2", "t/b/1", "t/c", "u/1")
    contents, prefixes, resume = bucket.list("t/", "/", "", 1000)
    assert [k for k, _ in contents] == ["t/c"]
    assert (prefixes, resume) == (["t/a/", "t/b/"], None)
    page, prefixes, resume = bucket.list("t/", "/", "", 1)
    assert (page, prefixes, resume) == ([], ["t/a/"], "t/a/")
    _, prefixes, _ = bucket.list("t/", "/", resume, 1)
    assert prefixes == ["t/b/"]  # resuming after a common prefix skips all its keys


def test_deleted_keys_leave_the_index() -> None:
    bucket = _bucket("a", "b", "c")
    assert bucket.delete("b")
    assert not bucket.delete("b")
    assert [k for k, _ in bucket.list("", None, "", 10)[0]] == ["a", "c"]


def _batch(records: int) -> bytes:
    """The head of a Kafka v2 RecordBatch as tansu stores it: magic 2 at byte 16,
    lastOffsetDelta in bytes 23-26."""
    head = bytearray(61)
    head[16] = 2
    head[23:27] = (records - 1).to_bytes(4, "big")
    return bytes(head)


def test_a_batch_object_says_which_offsets_it_holds() -> None:
    key = "clusters/c/topics/t/partitions/0000000001/records/00000000000000000132.batch"
    assert store.batch_span(key, _batch(17)) == (132, 17)
    assert store.batch_span(key, b"short") is None
    assert (
        store.batch_span("clusters/c/topics/t/partitions/0000000001/watermark.json", b"{}") is None
    )


def test_a_listing_stops_before_a_batch_written_past_a_missing_offset_while_it_is_young() -> None:
    """Two produces overlapping: offsets 0-1 and 2-4 taken, the second batch written first.
    A fetch must not see 2-4 while 0-1 may still come; a gap that stays is shown after the
    grace (a broker killed between taking offsets and writing them)."""
    now = datetime.now(UTC)
    prefix = "clusters/c/topics/t/partitions/0000000000/records/"

    def entry(offset: int, records: int, age_s: float) -> tuple[str, object]:
        return (
            f"{prefix}{offset:020d}.batch",
            store.Obj(_batch(records), '"e"', now - timedelta(seconds=age_s)),
        )

    grace = timedelta(seconds=2)
    whole = [entry(0, 2, 5), entry(2, 3, 5), entry(5, 1, 0.1)]
    assert store.until_young_gap(whole, now, grace) == whole
    young_gap = [entry(0, 2, 5), entry(3, 2, 0.1), entry(5, 1, 0.1)]
    assert store.until_young_gap(young_gap, now, grace) == young_gap[:1]
    old_gap = [entry(0, 2, 5), entry(3, 2, 3), entry(5, 1, 0.1)]
    assert store.until_young_gap(old_gap, now, grace) == old_gap


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("bytes=100-", 100, None),
        ("bytes=-5", 0, None),
    ],
)
def test_byte_ranges(header: str, size: int, span: tuple[int, int] | None) -> None:
    assert store.byte_range(header, size) == span


def test_keys_that_cannot_be_files_are_refused() -> None:
    assert store.key_problem("clusters/c/topics/t/partitions/0000000001/records/00.batch") is None
    for bad in ("a//b", "../etc/passwd", "a/./b", "a/.nanio-meta/x", "a/.tmp.123", "a/"):
        assert store.key_problem(bad) is not None, bad


def test_a_store_directory_loads_back_with_its_etags(tmp_path: Path) -> None:
    """Objects survive the store's own restart; an earlier version's side files (nanio's
    ``.nanio-meta`` and in-flight ``.tmp.`` uploads) are not objects."""
    first = store.Store(tmp_path)
    first.create_bucket("tansu")
    bucket = first.buckets["tansu"]
    first.write(bucket, "clusters/c/meta.json", b'{"v": 1}')
    first.write(bucket, "clusters/c/records/00000000000000000000.batch", b"batch")
    first.write(bucket, "gone", b"x")
    first.remove(bucket, "gone")
    (tmp_path / "tansu" / ".nanio-meta" / "clusters").mkdir(parents=True)
    (tmp_path / "tansu" / ".nanio-meta" / "clusters" / "meta.json.json").write_text("{}")
    (tmp_path / "tansu" / "clusters" / "c" / "records" / ".tmp.26ae90b5").write_bytes(b"half")
    (tmp_path / store.WRITES_DIR / "cut-short").write_bytes(b"never acknowledged")

    again = store.Store(tmp_path)
    loaded = again.buckets["tansu"]
    assert loaded.keys == ["clusters/c/meta.json", "clusters/c/records/00000000000000000000.batch"]
    meta = loaded.objects["clusters/c/meta.json"]
    assert meta.data == b'{"v": 1}'
    assert meta.etag == bucket.objects["clusters/c/meta.json"].etag
    assert list((tmp_path / store.WRITES_DIR).iterdir()) == []


def test_object_keys_are_path_style() -> None:
    assert store.split_path("/tansu/clusters/c/meta.json") == ("tansu", "clusters/c/meta.json")
    assert store.split_path("/tansu") == ("tansu", "")
    assert store.split_path("/tansu/") == ("tansu", "")
    assert store.split_path("/") == ("", "")


# ----------------------------------------------------------------------------- over HTTP


def _sign(
    method: str, url: httpx.URL, headers: dict[str, str], payload: str = "UNSIGNED-PAYLOAD"
) -> dict[str, str]:
    """SigV4 headers (a minimal client); ``payload`` is the body's SHA-256 it signs, by
    default none."""
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {
        "host": url.netloc.decode(),
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
    }
    names = ";".join(sorted(signed))
    query = "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in url.params.multi_items()
        )
    )
    canonical = "\n".join(
        [
            method,
            quote(url.path, safe="/-_.~"),
            query,
            "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
            names,
            payload,
        ]
    )
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{SECRET_KEY}".encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return {**headers, **signed}


class S3:
    """Just enough of an S3 client to send the headers tansu sends."""

    def __init__(self, client: httpx.AsyncClient, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, content: Any = None
    ) -> httpx.Response:
        url = httpx.URL(f"{self.endpoint}/{BUCKET}/{path}")
        return await self.client.request(
            method, url, headers=_sign(method, url, headers or {}), content=content
        )

    async def put(self, key: str, body: bytes, **conditions: str) -> httpx.Response:
        headers = {k.replace("_", "-"): v for k, v in conditions.items()}
        return await self.request("PUT", key, headers, body)

    async def get(self, key: str) -> httpx.Response:
        return await self.request("GET", key)

    async def list(self, prefix: str) -> list[str]:
        url = httpx.URL(f"{self.endpoint}/{BUCKET}", params={"list-type": "2", "prefix": prefix})
        response = await self.client.get(url, headers=_sign("GET", url, {}))
        assert response.status_code == 200, response.text
        return [part.split("</Key>")[0] for part in response.text.split("<Key>")[1:]]


@pytest.fixture(scope="module")
def store_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not infra_stack.tools_installed():
        message = "the broker's tools are not installed: run scripts/infra.sh install"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    storage = os.environ.get("VIDGEN_TEST_KAFKA_STORAGE") or None
    stack = infra_stack.InfraStack.private(tmp_path_factory.mktemp("store"), storage=storage)
    stack.start("kafka")
    try:
        yield f"http://127.0.0.1:{stack.store_port}"
    finally:
        stack.down()


@pytest.fixture
async def s3(store_endpoint: str) -> AsyncIterator[S3]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield S3(client, store_endpoint)


def _key() -> str:
    return f"test/{uuid.uuid4().hex}"


@pytest.mark.integration
async def test_create_only_put_refuses_an_existing_key(s3: S3) -> None:
    key = f"{_key()}/00000000000000000007.batch"
    first = await s3.put(key, b"first", if_none_match="*")
    assert first.status_code == 200
    second = await s3.put(key, b"second", if_none_match="*")
    assert second.status_code == 412
    assert b"PreconditionFailed" in second.content
    assert (await s3.get(key)).content == b"first"


@pytest.mark.integration
async def test_if_match_put_needs_the_current_etag(s3: S3) -> None:
    key = f"{_key()}/watermark.json"
    assert (await s3.put(key, b"v1", if_match='"0"')).status_code == 412  # no such object
    etag1 = (await s3.put(key, b"v1", if_none_match="*")).headers["etag"]
    etag2 = (await s3.put(key, b"v2", if_match=etag1)).headers["etag"]
    assert (await s3.put(key, b"v3", if_match=etag1)).status_code == 412  # stale
    assert (await s3.get(key)).content == b"v2"
    assert (await s3.put(key, b"v3", if_match=etag2)).status_code == 200
    assert (await s3.get(key)).content == b"v3"


@pytest.mark.integration
async def test_conditional_reads_and_ranges(s3: S3) -> None:
    key = f"{_key()}/00000000000000000000.batch"
    etag = (await s3.put(key, b"0123456789")).headers["etag"]
    assert (await s3.request("GET", key, {"if-none-match": etag})).status_code == 304
    assert (await s3.request("GET", key, {"if-match": '"other"'})).status_code == 412
    part = await s3.request("GET", key, {"range": "bytes=2-4"})
    assert (part.status_code, part.content) == (206, b"234")
    assert part.headers["content-range"] == "bytes 2-4/10"
    head = await s3.request("HEAD", key)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "10", b"")
    assert (await s3.request("DELETE", key)).status_code == 204
    assert (await s3.get(key)).status_code == 404


@pytest.mark.integration
async def test_a_listing_pages_with_continuation_tokens(s3: S3) -> None:
    prefix = f"{_key()}/records/"
    keys = [f"{prefix}{i:020d}.batch" for i in range(5)]
    for k in reversed(keys):
        assert (await s3.put(k, b"b")).status_code == 200
    seen: list[str] = []
    params = {"list-type": "2", "prefix": prefix, "max-keys": "2"}
    for _page in range(5):
        url = httpx.URL(f"{s3.endpoint}/{BUCKET}", params=params)
        page = await s3.client.get(url, headers=_sign("GET", url, {}))
        assert page.status_code == 200, page.text
        seen += [part.split("</Key>")[0] for part in page.text.split("<Key>")[1:]]
        if "<IsTruncated>true</IsTruncated>" not in page.text:
            break
        token = page.text.split("<NextContinuationToken>")[1].split("<")[0]
        params = {**params, "continuation-token": token}
    assert seen == keys


@pytest.mark.integration
async def test_requests_without_a_valid_signature_or_body_are_refused(
    s3: S3, store_endpoint: str
) -> None:
    key = f"{_key()}/x"
    unsigned = await s3.client.put(f"{store_endpoint}/{BUCKET}/{key}", content=b"x")
    assert unsigned.status_code == 403
    url = httpx.URL(f"{store_endpoint}/{BUCKET}/{key}")
    forged = _sign("PUT", url, {})
    forged["authorization"] = forged["authorization"][:-4] + "0000"
    assert (await s3.client.put(url, headers=forged, content=b"x")).status_code == 403
    # a valid signature over the SHA-256 of another body: the body is refused
    wrong_hash = _sign("PUT", url, {}, payload=hashlib.sha256(b"y").hexdigest())
    mismatch = await s3.client.put(url, headers=wrong_hash, content=b"x")
    assert mismatch.status_code == 400
    assert b"XAmzContentSHA256Mismatch" in mismatch.content
    right_hash = _sign("PUT", url, {}, payload=hashlib.sha256(b"x").hexdigest())
    assert (await s3.client.put(url, headers=right_hash, content=b"x")).status_code == 200
    assert (await s3.request("DELETE", key)).status_code == 204
    assert (await s3.get(key)).status_code == 404
    multipart = await s3.request("POST", f"{key}?uploads")
    assert multipart.status_code == 501
    assert b"NotImplemented" in multipart.content


@pytest.mark.integration
async def test_optimistic_increments_lose_no_update(s3: S3) -> None:
    """tansu's watermark loop: read with ETag, write back with If-Match, retry on 412."""
    key = f"{_key()}/watermark.json"
    assert (await s3.put(key, b'{"high": 0}', if_none_match="*")).status_code == 200
    workers, each = 8, 5

    async def increment() -> None:
        for _ in range(each):
            for _attempt in range(200):
                got = await s3.get(key)
                high = json.loads(got.content)["high"]
                body = json.dumps({"high": high + 1}).encode()
                put = await s3.put(key, body, if_match=got.headers["etag"])
                if put.status_code == 200:
                    break
                assert put.status_code == 412, put.text
            else:
                raise AssertionError("no increment went through in 200 attempts")

    await asyncio.gather(*(increment() for _ in range(workers)))
    assert json.loads((await s3.get(key)).content)["high"] == workers * each


@pytest.mark.integration
async def test_listing_never_shows_an_upload_in_flight(s3: S3) -> None:
    prefix = f"{_key()}/records/"
    assert (await s3.put(f"{prefix}00000000000000000000.batch", b"x")).status_code == 200
    sent_first = asyncio.Event()
    finish = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        sent_first.set()
        await finish.wait()
        yield b"b" * 1000

    upload = asyncio.create_task(
        s3.request(
            "PUT",
            f"{prefix}00000000000000000001.batch",
            {"if-none-match": "*", "content-length": "2000"},
            slow_body(),
        )
    )
    await sent_first.wait()
    await asyncio.sleep(0.2)  # let the server stage the first chunk
    during = await s3.list(prefix)
    finish.set()
    assert (await upload).status_code == 200
    after = await s3.list(prefix)
    assert during == [f"{prefix}00000000000000000000.batch"]
    assert after == [f"{prefix}00000000000000000000.batch", f"{prefix}00000000000000000001.batch"]


@pytest.mark.integration
async def test_reads_never_see_a_half_replaced_object(s3: S3) -> None:
    key = f"{_key()}/group.json"
    bodies = [b"s" * 10, b"L" * 200_000]
    assert (await s3.put(key, bodies[0])).status_code == 200
    torn: list[str] = []

    async def writer() -> None:
        for i in range(40):
            assert (await s3.put(key, bodies[i % 2])).status_code == 200

    async def reader() -> None:
        for _ in range(40):
            got = await s3.get(key)
            digest = '"' + hashlib.md5(got.content, usedforsecurity=False).hexdigest() + '"'
            if got.content not in bodies or got.headers["etag"] != digest:
                torn.append(f"{len(got.content)} bytes under {got.headers['etag']}")

    await asyncio.gather(writer(), reader(), reader(), reader())
    assert torn == []


@pytest.mark.integration
async def test_an_idle_keep_alive_connection_outlives_the_brokers_pool_timeout(
    store_endpoint: str,
) -> None:
    """tansu's HTTP client keeps idle connections for 90 s and does not retry a PUT on a reset
    connection: a store that closes idle connections sooner races it (the client sends on a
    connection the server is closing) and the broker fails a produce. Seen in a chaos run as
    ``Connection reset by peer`` on a PUT and a record missing from a partition."""
    url = httpx.URL(store_endpoint)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = f"GET /healthz-none HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n\r\n".encode()
    try:
        for pause in (0.0, 6.5):  # uvicorn closes idle connections after 5 s by default
            await asyncio.sleep(pause)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 "), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
