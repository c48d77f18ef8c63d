"""Prompt images are judged by content: magic bytes, the same format decoded, the size."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from vidgen_gateway.errors import ImageDimensions, UnsupportedImage
from vidgen_gateway.images import JPEG, PNG, WEBP, check_image, sniff


def encode(fmt: str, w: int = 300, h: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (9, 9, 9)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", PNG), ("JPEG", JPEG), ("WEBP", WEBP)])
def test_accepted_formats(fmt: str, kind: Any) -> None:
    data = encode(fmt)
    assert sniff(data[:16]) is kind
    checked = check_image(data, min_side=100, max_side=1000)
    assert (checked.kind, checked.width, checked.height) == (kind, 300, 200)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedImage):
        check_image(encode(fmt), min_side=1, max_side=1000)


def test_magic_bytes_alone_are_not_enough() -> None:
    png = encode("PNG")
    for data in (png[:8] + b"garbage" * 50, png[: len(png) - 20], encode("JPEG")[:40]):
        with pytest.raises(UnsupportedImage):
            check_image(data, min_side=1, max_side=1000)


def test_bounds_on_each_side() -> None:
    with pytest.raises(ImageDimensions):
        check_image(encode("PNG", 99, 500), min_side=100, max_side=1000)
    with pytest.raises(ImageDimensions):
        check_image(encode("PNG", 500, 1001), min_side=100, max_side=1000)
    check_image(encode("PNG", 100, 1000), min_side=100, max_side=1000)


def test_a_header_claiming_huge_dimensions_is_refused_before_decoding() -> None:
    """A PNG whose header says 100000 x 100000 (a decompression bomb) is refused by size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    with pytest.raises(ImageDimensions):
        check_image(bomb + chunk(b"IEND", b""), min_side=1, max_side=8000)
