"""Webhooks end to end: endpoints registered through the gateway, a generation run to its
end by every service as a real process, and real HTTP receivers that verify what they got.

The receivers judge: the ``standardwebhooks`` package verifies ``v1``, an Ed25519 check of
our own (``cryptography``) verifies ``v1a`` against the published key, and the receivers of
docs/webhooks.md (docs/examples/receiver.py, and receiver.mjs where ``node`` is installed)
run as their own processes and print what they accepted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.e2e.test_e2e import generate, poll, upload, wait_terminal
from tests.support.receiver import Received, running_receiver
from tests.support.system import System, free_port

# Each test runs a whole generation and waits on real receivers: more than the default bound
# on a loaded machine (the first one also starts the system).
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
TERMINAL_TYPES = {"generation.completed", "generation.failed", "generation.cancelled"}


def register(client: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/webhooks", json={"url": url, **extra})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    return created


def v1a_valid(public_key: str, got: Received) -> bool:
    """An Ed25519 check written from the spec, independent of the notifier's code."""
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_") :]))
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
    for item in got.headers["webhook-signature"].split(" "):
        version, _, signature = item.partition(",")
        if version == "v1a":
            try:
                key.verify(base64.b64decode(signature), signed + got.body)
            except InvalidSignature:
                continue
            return True
    return False


def for_generation(received: list[Received], generation_id: str) -> list[Received]:
    return [r for r in received if json.loads(r.body)["data"].get("generationId") == generation_id]


def test_a_finished_generation_reaches_its_endpoint_signed_once(
    system: System, fast_runway: System
) -> None:
    with running_receiver() as receiver, system.client("hook-alice") as client:
        endpoint = register(client, receiver.url("/hook"))
        assert set(endpoint["events"]) == TERMINAL_TYPES, "the default: the terminal ones"
        public_key = client.get("/api/webhooks/signing-key").json()["publicKey"]
        project_id = upload(client)
        generation_id = generate(client, project_id, "a lighthouse at dusk")
        final = wait_terminal(client, generation_id)
        assert final["status"] == "completed", final

        [got] = poll(
            lambda: for_generation(receiver.at("/hook"), generation_id),
            "the completion webhook",
            within=30,
        )
        # v1 with the standard library of the spec; v1a with our own Ed25519 check.
        event = Webhook(endpoint["secret"]).verify(got.body, got.headers)
        assert v1a_valid(public_key, got)
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint["secret"]).verify(got.body + b" ", got.headers)
        assert got.headers["webhook-id"].startswith("msg_")
        assert got.headers["content-type"] == "application/json"
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
        assert event["type"] == "generation.completed"
        data = event["data"]
        assert data["generationId"] == generation_id
        assert data["projectId"] == project_id
        assert data["status"] == "completed"
        assert data["costCredits"] == final["costCredits"]
        assert data["videoUrlExpiresAt"]
        video = httpx.get(data["videoUrl"], timeout=30)
        assert video.status_code == 200
        [(sha,)] = system.sql(
            "SELECT sha256 FROM media.transfers WHERE generation_id = :g", g=generation_id
        )
        assert hashlib.sha256(video.content).hexdigest() == sha, "the link is to the stored video"
        assert httpx.get(data["thumbnailUrl"], timeout=30).content[:3] == b"\xff\xd8\xff"

        # The delivery log says what the receiver saw: one delivery, one 204.
        log = client.get(f"/api/webhooks/{endpoint['id']}/deliveries").json()["items"]
        [delivery] = [d for d in log if d["generationId"] == generation_id]
        assert delivery["status"] == "delivered"
        assert delivery["webhookId"] == got.headers["webhook-id"]
        assert [a["statusCode"] for a in delivery["attempts"]] == [204]
        # Nothing else came for this generation (only terminal events were asked for).
        time.sleep(1)
        assert len(for_generation(receiver.at("/hook"), generation_id)) == 1
        # Another user sees none of it.
    with system.client("hook-mallory") as other:
        assert other.get(f"/api/webhooks/{endpoint['id']}").status_code == 404
        assert other.get(f"/api/webhooks/{endpoint['id']}/deliveries").status_code == 404


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the receiver exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the receiver never listened: {log.read_text()}")


@contextmanager
def documented_receiver(argv: list[str], secret: str, log: Path) -> Iterator[str]:
    """Run a receiver of docs/examples as its own process; yields its URL."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "WEBHOOK_SECRET": secret, "PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


def _receivers() -> list[tuple[str, list[str]]]:
    found = [("python", [sys.executable, str(EXAMPLES / "receiver.py")])]
    node = shutil.which("node")
    if node:
        found.append(("node", [node, str(EXAMPLES / "receiver.mjs")]))
    return found


@pytest.mark.parametrize(("language", "argv"), _receivers(), ids=[r[0] for r in _receivers()])
def test_the_documented_receiver_accepts_real_deliveries_and_refuses_forgeries(
    system: System, fast_runway: System, tmp_path: Path, language: str, argv: list[str]
) -> None:
    with system.client(f"hook-doc-{language}") as client:
        # Its URL is only known once it runs, and its secret only once registered: register a
        # placeholder, start the receiver with the secret, then point the endpoint at it.
        endpoint = register(client, "http://127.0.0.1:9/")
        log = tmp_path / "receiver.log"
        with documented_receiver(argv, endpoint["secret"], log) as url:
            patched = client.patch(f"/api/webhooks/{endpoint['id']}", json={"url": url})
            assert patched.status_code == 200, patched.text
            # A forgery (wrong secret) and a replayed old timestamp are refused.
            forged = Webhook("whsec_" + base64.b64encode(b"x" * 32).decode())
            body = b'{"type":"generation.completed","timestamp":"x","data":{}}'
            now = int(time.time())
            for stamp in (now, now - 3600):
                headers = {"webhook-id": "msg_forged", "webhook-timestamp": str(stamp)}
                signer = forged if stamp == now else Webhook(endpoint["secret"])
                sent = datetime.fromtimestamp(stamp, tz=UTC)
                headers["webhook-signature"] = signer.sign("msg_forged", sent, body.decode())
                answer = httpx.post(url, content=body, headers=headers, timeout=10)
                assert answer.status_code == 401, (stamp, answer.status_code)

            ping = client.post(f"/api/webhooks/{endpoint['id']}/ping")
            assert ping.status_code == 202, ping.text
            project_id = upload(client)
            generation_id = generate(client, project_id, f"a kite, verified in {language}")
            assert wait_terminal(client, generation_id)["status"] == "completed"
            poll(
                lambda: f"generation.completed {generation_id}" in log.read_text(),
                f"the {language} receiver to accept the completion",
                within=30,
            )
        lines = log.read_text().splitlines()
        assert "webhook.ping -" in lines, lines
        assert lines.count(f"generation.completed {generation_id}") == 1, lines
        log_items = client.get(f"/api/webhooks/{endpoint['id']}/deliveries").json()["items"]
        assert {d["status"] for d in log_items} == {"delivered"}, log_items


def test_the_cli_manages_endpoints_and_rotation_signs_with_both_secrets(
    system: System, fast_runway: System
) -> None:
    def vidgen(*args: str, ok: bool = True) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "vidgen_cli", "--api-url", system.gateway, "--user",
             "hook-cli", "--json", "webhooks", *args],
            env=system.env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        out = result.stdout.strip()
        return json.loads(out) if out.startswith("{") else result.stdout + result.stderr

    with running_receiver() as receiver:
        created = vidgen(
            "create", receiver.url("/cli"), "--event", "generation.completed",
            "--event", "generation.failed", "--description", "from the CLI",
        )  # fmt: skip
        ep = created["id"]
        assert created["events"] == ["generation.completed", "generation.failed"]
        assert created["secret"].startswith("whsec_")
        assert [e["id"] for e in vidgen("list")["items"]] == [ep]
        got = vidgen("get", ep)
        assert "secret" not in got, "the secret is shown once only"
        assert got["description"] == "from the CLI"
        assert vidgen("update", ep, "--disable")["enabled"] is False
        assert vidgen("update", ep, "--enable")["enabled"] is True
        refused = vidgen("update", ep, "--event", "generation.exploded", ok=False)
        assert "422" in refused, refused
        assert "events" in refused, refused
        assert "422" in vidgen("create", "http://10.0.0.1/x", ok=False), "a private address"
        assert vidgen("signing-key")["publicKey"].startswith("whpk_")

        rotated = vidgen("rotate", ep, "--overlap", "600")
        assert rotated["secret"] != created["secret"]
        assert rotated["previousSecretExpiresAt"]
        ping = vidgen("ping", ep)["deliveryId"]
        [first] = poll(lambda: receiver.at("/cli"), "the ping", within=30)
        # During the overlap both secrets verify the same message.
        for secret in (created["secret"], rotated["secret"]):
            assert Webhook(secret).verify(first.body, first.headers)["type"] == "webhook.ping"
        versions = [s.split(",")[0] for s in first.headers["webhook-signature"].split(" ")]
        assert versions == ["v1", "v1", "v1a"], versions

        log = vidgen("deliveries", ep)
        [item] = [d for d in log["items"] if d["id"] == ping]
        assert item["status"] == "delivered"
        assert item["attempts"][0]["statusCode"] == 204
        assert item["attempts"][0]["latencyMs"] is not None
        again = vidgen("redeliver", ep, ping)["deliveryId"]
        assert again != ping
        _, second = poll(lambda: (r := receiver.at("/cli")) and len(r) >= 2 and r, "redelivery")
        assert second.headers["webhook-id"] == first.headers["webhook-id"], "same message id"
        assert "deleted" in vidgen("delete", ep)
        assert vidgen("list")["items"] == []
        assert "404" in vidgen("get", ep, ok=False)
