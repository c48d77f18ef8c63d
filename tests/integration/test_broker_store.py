"""The broker's object store (scripts/broker_store.py): S3's conditional writes over nanio.

The rules are tested as functions; the behaviour is tested over HTTP against the real store
that scripts/infra.sh starts for a private stack (nanio served with the layer). Set
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
from datetime import UTC, datetime
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


def _listing(*keys: str) -> bytes:
    contents = "".join(
        f"<Contents><Key>{k}</Key><ETag>&quot;x&quot;</ETag><Size>1</Size></Contents>" for k in keys
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
        f"<KeyCount>{len(keys)}</KeyCount><IsTruncated>false</IsTruncated>{contents}"
        "</ListBucketResult>"
    ).encode()


def test_staging_entries_are_dropped_from_listings() -> None:
    body = _listing(
        "p/records/.tmp.26ae90b5a43342699aae60a26daceeab",
        "p/records/00000000000000000000.batch",
        "p/records/00000000000000000001.batch",
    )
    out = store.drop_staging_entries(body, url_encoded=False)
    assert b".tmp." not in out
    assert b"<KeyCount>2</KeyCount>" in out
    assert out.count(b"<Contents>") == 2
    assert store.drop_staging_entries(_listing("a/b.batch"), url_encoded=False) == _listing(
        "a/b.batch"
    )


def test_url_encoded_staging_entries_are_dropped_too() -> None:
    body = _listing("p%2Frecords%2F.tmp.abc", "p%2Frecords%2F.tmpfile")
    out = store.drop_staging_entries(body, url_encoded=True)
    assert out.count(b"<Contents>") == 1
    assert b".tmpfile" in out
    assert b"<KeyCount>1</KeyCount>" in out


def test_object_keys_are_path_style() -> None:
    assert store.object_key("/tansu/clusters/c/meta.json") == ("tansu", "clusters/c/meta.json")
    assert store.object_key("/tansu") is None
    assert store.object_key("/tansu/") is None
    assert store.object_key("/") is None


async def test_key_locks_let_readers_share_and_writers_wait() -> None:
    locks = store.KeyLocks()
    order: list[str] = []
    reader_in = asyncio.Event()
    release_readers = asyncio.Event()

    async def reader(name: str) -> None:
        async with locks.hold("k", exclusive=False):
            order.append(f"{name} in")
            reader_in.set()
            await release_readers.wait()
            order.append(f"{name} out")

    async def writer() -> None:
        async with locks.hold("k", exclusive=True):
            order.append("writer")

    r1 = asyncio.create_task(reader("r1"))
    await reader_in.wait()
    w = asyncio.create_task(writer())
    await asyncio.sleep(0)
    r2 = asyncio.create_task(reader("r2"))  # arrives after the writer: waits for it
    await asyncio.sleep(0.01)
    assert order == ["r1 in"]
    release_readers.set()
    await asyncio.gather(r1, w, r2)
    assert order == ["r1 in", "r1 out", "writer", "r2 in", "r2 out"]
    assert len(locks) == 0  # entries go away when nobody holds them


async def test_key_locks_are_per_key() -> None:
    locks = store.KeyLocks()
    async with locks.hold("a", exclusive=True):
        async with asyncio.timeout(1):
            async with locks.hold("b", exclusive=True):
                assert len(locks) == 2
    assert len(locks) == 0


# ----------------------------------------------------------------------------- over HTTP


def _sign(method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
    """SigV4 headers for a request whose payload is not signed (a minimal client)."""
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    signed = {
        "host": url.netloc.decode(),
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
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
            "UNSIGNED-PAYLOAD",
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
