"""Prompt-image checks: the type by content (magic bytes, then a full decode) and the size.

The file name and the client's content type are never trusted. A file is accepted when its
first bytes are those of PNG, JPEG or WebP, Pillow identifies the same format, its structure
verifies and the whole image decodes; its width and height must lie within the configured bounds.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from vidgen_gateway.errors import ImageDimensions, UnsupportedImage


@dataclass(frozen=True)
class ImageKind:
    content_type: str
    extension: str
    pil_format: str


PNG = ImageKind("image/png", "png", "PNG")
JPEG = ImageKind("image/jpeg", "jpg", "JPEG")
WEBP = ImageKind("image/webp", "webp", "WEBP")


@dataclass(frozen=True)
class CheckedImage:
    kind: ImageKind
    width: int
    height: int


def sniff(head: bytes) -> ImageKind | None:
    """The image type announced by the first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def check_image(data: bytes, *, min_side: int, max_side: int) -> CheckedImage:
    """Identify and fully decode ``data``; raise 415/422 errors when it is not acceptable.

    Blocking (decodes the image): call it in a worker thread.
    """
    kind = sniff(data[:16])
    if kind is None:
        raise UnsupportedImage(
            "The file is not a PNG, JPEG or WebP image.",
            details={"accepted": [PNG.content_type, JPEG.content_type, WEBP.content_type]},
        )
    try:
        with warnings.catch_warnings():
            # Size is judged below against our own bounds, before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[kind.pil_format]) as img:
                width, height = img.size
                _check_size(width, height, min_side, max_side)
                img.verify()  # structure and checksums (PNG chunk CRCs, …)
            with Image.open(io.BytesIO(data), formats=[kind.pil_format]) as img:
                img.load()  # and every pixel decodes
    except (ImageDimensions, UnsupportedImage):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDimensions(
            "The image has too many pixels.", details={"maxSidePx": max_side}
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedImage(
            f"The file looks like {kind.pil_format} but does not decode as one.",
            details={"detected": kind.content_type},
        ) from exc
    return CheckedImage(kind, width, height)


def _check_size(width: int, height: int, min_side: int, max_side: int) -> None:
    if min(width, height) < min_side or max(width, height) > max_side:
        raise ImageDimensions(
            f"The image is {width}x{height} pixels; each side must be between "
            f"{min_side} and {max_side} pixels.",
            details={
                "width": width,
                "height": height,
                "minSidePx": min_side,
                "maxSidePx": max_side,
            },
        )
