"""Signatures a receiver can verify: v1 with the `standardwebhooks` library, v1a with an
independent Ed25519 check; secrets sealed at rest."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vidgen_notifier.settings import DEV_SIGNING_KEY
from vidgen_notifier.signing import (
    KeyFormatError,
    SigningKey,
    new_secret,
    secret_bytes,
    signature_header,
    webhook_id,
)
from vidgen_notifier.vault import Vault, VaultError, signing_key

BODY = json.dumps({"type": "generation.completed", "data": {"generationId": "g1"}}).encode()


def headers(msg_id: str, stamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def verify_v1a(public_key: str, msg_id: str, stamp: int, body: bytes, header: str) -> bool:
    """An Ed25519 check written from the spec, not from our code."""
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[5:]))
    for part in header.split(" "):
        version, sig = part.split(",", 1)
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(sig), f"{msg_id}.{stamp}.".encode() + body)
            return True
        except InvalidSignature:
            continue
    return False


def test_v1_verifies_with_the_standardwebhooks_library() -> None:
    secret = new_secret()
    key = SigningKey.generate()
    stamp = int(time.time())
    header = signature_header([secret], key, "msg_1", stamp, BODY)
    assert Webhook(secret).verify(BODY, headers("msg_1", stamp, header)) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers("msg_1", stamp, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers("msg_1", stamp, header))


def test_v1a_verifies_with_an_independent_ed25519_check() -> None:
    key = SigningKey.generate()
    stamp = int(time.time())
    header = signature_header([new_secret()], key, "msg_2", stamp, BODY)
    assert verify_v1a(key.public_key, "msg_2", stamp, BODY, header)
    assert not verify_v1a(key.public_key, "msg_3", stamp, BODY, header)
    assert not verify_v1a(SigningKey.generate().public_key, "msg_2", stamp, BODY, header)


def test_during_a_rotation_both_secrets_sign() -> None:
    old, new = new_secret(), new_secret()
    stamp = int(time.time())
    header = signature_header([new, old], None, "msg_r", stamp, BODY)
    assert header.count("v1,") == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers("msg_r", stamp, header))


def test_key_formats() -> None:
    assert 24 <= len(secret_bytes(new_secret())) <= 64
    for bad in ("nope", "whsec_!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(KeyFormatError):
            secret_bytes(bad)
    key = SigningKey.generate()
    seed = key.private.private_bytes_raw()
    parsed = SigningKey.parse("whsk_" + base64.b64encode(seed).decode())
    assert parsed.public_key == key.public_key
    assert len(base64.b64decode(key.public_key[5:])) == 32
    with pytest.raises(KeyFormatError):
        SigningKey.parse("whpk_" + base64.b64encode(seed).decode())


def test_the_development_key_is_stable_and_obviously_fake() -> None:
    assert "not-for-production" in DEV_SIGNING_KEY
    assert signing_key(DEV_SIGNING_KEY).public_key == signing_key(DEV_SIGNING_KEY).public_key


def test_the_webhook_id_is_derived_from_event_and_endpoint() -> None:
    a = webhook_id("event-1", "ep_1")
    assert a.startswith("msg_")
    assert a == webhook_id("event-1", "ep_1")
    assert a != webhook_id("event-1", "ep_2") != webhook_id("event-2", "ep_1")


def test_secrets_are_sealed_for_their_owner() -> None:
    vault = Vault(base64.b64encode(b"k" * 32).decode())
    secret = new_secret()
    sealed = vault.seal(secret, "ep_1")
    assert secret not in sealed
    assert secret[6:] not in sealed
    assert vault.open(sealed, "ep_1") == secret
    with pytest.raises(VaultError):
        vault.open(sealed, "ep_2")  # copied onto another row
    with pytest.raises(VaultError):
        Vault(base64.b64encode(b"x" * 32).decode()).open(sealed, "ep_1")
    with pytest.raises(VaultError):
        Vault("too short")


def test_timestamps_far_off_are_refused_by_receivers() -> None:
    secret = new_secret()
    stale = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    header = signature_header([secret], None, "msg_s", stale, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers("msg_s", stale, header))
