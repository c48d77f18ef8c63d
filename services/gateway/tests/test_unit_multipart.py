"""Reading the file field of a multipart body within a byte budget, as it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vidgen_gateway.errors import PayloadTooLarge, Unprocessable, UnsupportedImage
from vidgen_gateway.multipart import read_file_field

BOUNDARY = "xYzBoundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def part(name: str, data: bytes, filename: str | None = "a.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (
        (
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_reads_the_named_field_among_others() -> None:
    data = body(part("note", b"hello", None), part("file", b"\x89PNG" + b"1" * 5000))
    got = await read_file_field(HEADERS, chunks(data), "file", 10_000)
    assert got.data == b"\x89PNG" + b"1" * 5000
    assert (got.filename, got.content_type) == ("a.png", "image/png")


async def test_stops_reading_once_the_file_is_over_budget() -> None:
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        head = part("file", b"")[:-2]  # headers only, the data follows forever
        yield head
        while True:
            consumed += 1000
            yield b"z" * 1000

    with pytest.raises(PayloadTooLarge):
        await read_file_field(HEADERS, endless(), "file", 10_000)
    assert consumed <= 11_000


async def test_declared_length_over_budget_is_refused_before_reading() -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    headers = {**HEADERS, "content-length": str(10**9)}
    with pytest.raises(PayloadTooLarge):
        await read_file_field(headers, never(), "file", 10_000)


async def test_missing_field_malformed_and_not_multipart() -> None:
    with pytest.raises(Unprocessable):
        await read_file_field(HEADERS, chunks(body(part("other", b"x"))), "file", 10_000)
    with pytest.raises(UnsupportedImage):
        await read_file_field({"content-type": "image/png"}, chunks(b"x"), "file", 10_000)
    with pytest.raises(Unprocessable):
        await read_file_field(HEADERS, chunks(b"--wrong\r\nnonsense"), "file", 10_000)
