"""Object keys of a generation's video and poster, safe for any user id.

``videos/{user}/{generation}.mp4`` and the poster ``….jpg`` next to it, where each segment is
the id itself when it is *plain* (the characters the gateway accepts in a JWT subject,
``A-Z a-z 0-9 . _ @ : | + -``, at most 128, not starting with a dot, no ``..``), so every
key written so far stays what it was. Any other id (``a..b``, ``../x``, ``a/b``, unicode,
empty, very long) is encoded, so that no id can escape the layout or collide with another:

* ``!`` + the base32 (lowercase, unpadded) of its UTF-8 bytes, reversible
  (:func:`decode_segment`), while that stays at most :data:`MAX_ENCODED` characters;
* ``!!`` + the hex sha256 of its UTF-8 bytes beyond that (S3 keys are at most 1024 bytes).

Plain segments never start with ``!`` and the base32 alphabet has no ``!``, so the three forms
never meet; two ids share a segment only if their sha256 collide.
"""

from __future__ import annotations

import base64
import hashlib
import re

_PLAIN = re.compile(r"^[A-Za-z0-9_@:|+-][A-Za-z0-9._@:|+-]{0,127}$")
MAX_ENCODED = 160


def segment(value: str) -> str:
    """The key segment of one id (see the module doc)."""
    if _PLAIN.match(value) and ".." not in value:
        return value
    raw = value.encode("utf-8", "surrogatepass")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) <= MAX_ENCODED:
        return "!" + encoded
    return "!!" + hashlib.sha256(raw).hexdigest()


def decode_segment(seg: str) -> str | None:
    """The id a segment stands for; None for a hashed one (not reversible)."""
    if seg.startswith("!!"):
        return None
    if not seg.startswith("!"):
        return seg
    body = seg[1:].upper()
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    return raw.decode("utf-8", "surrogatepass")


def object_keys(user_id: str, generation_id: str) -> tuple[str, str]:
    """The video's key and its poster's."""
    base = f"videos/{segment(user_id)}/{segment(generation_id)}"
    return f"{base}.mp4", f"{base}.jpg"


def poster_key(video_key: str) -> str:
    """The poster next to a video recorded under ``video_key``."""
    return video_key.removesuffix(".mp4") + ".jpg"
