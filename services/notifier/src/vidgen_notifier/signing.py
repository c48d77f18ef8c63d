"""Standard Webhooks 1.0 signatures, and the keys they are made with.

What is signed is ``{webhook-id}.{webhook-timestamp}.{body}`` (the body's exact bytes):

- ``v1``: HMAC-SHA256 with the endpoint's secret, shown to users as ``whsec_`` + base64 of
  24 to 64 random bytes (ours: 32);
- ``v1a``: Ed25519 with the deployment's key, ``whsk_`` + base64 of the 32-byte private
  seed; receivers verify with the public key, ``whpk_`` + base64 of its 32 bytes
  (``GET /api/webhooks/signing-key``).

``webhook-signature`` is a space-separated list of ``<version>,<base64 signature>``: one
``v1`` per secret in force (the new and the previous one during a rotation's overlap), then
the ``v1a``. ``webhook-timestamp`` is the attempt's time (receivers refuse timestamps more
than a few minutes off, so every retry is signed anew; ``webhook-id`` stays the same).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32


class KeyFormatError(ValueError):
    """A secret or key that is not in its Standard Webhooks serialisation."""


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise KeyFormatError("a webhook secret starts with whsec_")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("a webhook secret is whsec_ + base64") from exc
    if not 24 <= len(raw) <= 64:
        raise KeyFormatError("a webhook secret holds 24 to 64 bytes")
    return raw


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_v1(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>``."""
    mac = hmac.new(secret_bytes(secret), signed_content(msg_id, timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


@dataclass(frozen=True)
class SigningKey:
    """The deployment's Ed25519 key (``v1a``)."""

    private: Ed25519PrivateKey

    @classmethod
    def parse(cls, value: str) -> SigningKey:
        """From ``whsk_`` + base64 of the 32-byte seed (a 64-byte seed+public form is also
        taken, its first half being the seed)."""
        if not value.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFormatError("a signing key starts with whsk_")
        try:
            raw = base64.b64decode(value[len(PRIVATE_KEY_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyFormatError("a signing key is whsk_ + base64") from exc
        if len(raw) not in (32, 64):
            raise KeyFormatError("a signing key holds the 32-byte Ed25519 seed")
        return cls(Ed25519PrivateKey.from_private_bytes(raw[:32]))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_key(self) -> str:
        """``whpk_`` + base64 of the raw public key: what receivers verify with."""
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()

    def sign_v1a(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """``v1a,<base64 Ed25519 signature>``."""
        signature = self.private.sign(signed_content(msg_id, timestamp, body))
        return "v1a," + base64.b64encode(signature).decode()


def signature_header(
    secrets_in_force: Sequence[str],
    key: SigningKey | None,
    msg_id: str,
    timestamp: int,
    body: bytes,
) -> str:
    """The ``webhook-signature`` value: a ``v1`` per secret, then the ``v1a``."""
    parts = [sign_v1(s, msg_id, timestamp, body) for s in secrets_in_force]
    if key is not None:
        parts.append(key.sign_v1a(msg_id, timestamp, body))
    return " ".join(parts)


def webhook_id(event_id: str, endpoint_id: str) -> str:
    """The ``webhook-id`` of one event for one endpoint: derived, not drawn, so the same
    Kafka event handled twice (a redelivery, a replay) can never name a second message."""
    digest = hashlib.sha256(f"{event_id}\x00{endpoint_id}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:20]).decode().rstrip("=").lower()
