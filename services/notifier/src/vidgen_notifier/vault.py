"""The endpoints' secrets at rest: AES-256-GCM with a key from the environment
(``VIDGEN_WEBHOOK_SECRET_KEY``), so that a database dump alone does not let anyone sign.

A sealed value is ``v1:`` + base64 of nonce (12 bytes) + ciphertext; the owner of the secret
(an endpoint id, a user id) is the associated data, so a sealed secret copied onto another
row does not open. Secrets are never logged: nothing here formats one into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vidgen_notifier.settings import DEV_SECRET_KEY, DEV_SIGNING_KEY
from vidgen_notifier.signing import SigningKey

_VERSION = "v1:"


class VaultError(ValueError):
    """A key that is not one, or a sealed value that does not open with it."""


def _key_bytes(value: str) -> bytes:
    if value == DEV_SECRET_KEY:  # development only (the settings refuse it elsewhere)
        return hashlib.sha256(value.encode()).digest()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError("VIDGEN_WEBHOOK_SECRET_KEY is base64 of 32 bytes") from exc
    if len(raw) != 32:
        raise VaultError("VIDGEN_WEBHOOK_SECRET_KEY is base64 of 32 bytes")
    return raw


class Vault:
    def __init__(self, key: str) -> None:
        self._aead = AESGCM(_key_bytes(key))

    def seal(self, secret: str, owner: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), owner.encode())
        return _VERSION + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, owner: str) -> str:
        if not sealed.startswith(_VERSION):
            raise VaultError("not a sealed secret")
        raw = base64.b64decode(sealed[len(_VERSION) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], owner.encode()).decode()
        except InvalidTag as exc:
            raise VaultError("the secret does not open with this key") from exc


def signing_key(value: str) -> SigningKey:
    """The deployment's v1a key from its setting (the development default is derived from
    its obviously fake text)."""
    if value == DEV_SIGNING_KEY:
        return SigningKey.from_seed(hashlib.sha256(value.encode()).digest())
    return SigningKey.parse(value)
