"""The sender connects to the address it checked, with the original name as Host, TLS SNI
and certificate name (real sockets on this machine)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vidgen_common.webhook_targets import AllowList, check_url
from vidgen_notifier.sender import HttpSender


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsReceiver:
    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sni: list[str | None] = []
        self.hosts: list[str] = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                if k.lower() == "host":
                    self.hosts.append(v.strip())
                if k.lower() == "content-length":
                    length = int(v)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[TlsReceiver, Path]]:
    cert, key = self_signed(tmp_path, "localhost")
    r = TlsReceiver(cert, key)
    await r.start()
    yield r, cert
    await r.stop()


async def test_https_goes_to_the_checked_address_with_the_name_as_sni_and_host(
    tls: tuple[TlsReceiver, Path],
) -> None:
    receiver, ca = tls
    trust = ssl.create_default_context(cafile=str(ca))
    sender = HttpSender(AllowList.parse("localhost"), 5.0, verify=trust)
    try:
        url = check_url(
            f"https://localhost:{receiver.port}/hook", production=True, allowed=AllowList()
        )
        assert ipaddress.ip_address("127.0.0.1") in await sender.resolve(url)
        answer = await sender.send(url, {"content-type": "application/json"}, b"{}")
        assert answer.status_code == 204, answer
        assert receiver.sni == ["localhost"]  # not the address connected to
        assert receiver.hosts == [f"localhost:{receiver.port}"]
    finally:
        await sender.close()


async def test_a_certificate_not_trusted_is_a_failure_said_as_such(
    tls: tuple[TlsReceiver, Path],
) -> None:
    receiver, _ = tls
    sender = HttpSender(AllowList.parse("localhost"), 5.0)  # the system's trust
    try:
        url = check_url(f"https://localhost:{receiver.port}/", production=True, allowed=AllowList())
        answer = await sender.send(url, {}, b"{}")
        assert answer.status_code is None
        assert "CERTIFICATE_VERIFY_FAILED" in (answer.error or "")
    finally:
        await sender.close()


async def test_the_allow_list_is_checked_on_the_resolved_address(tls: Any) -> None:
    receiver, ca = tls
    sender = HttpSender(AllowList(), 5.0, verify=ssl.create_default_context(cafile=str(ca)))
    try:
        url = check_url(f"https://localhost:{receiver.port}/", production=True, allowed=AllowList())
        answer = await sender.send(url, {}, b"{}")
        assert (answer.error or "").startswith("refused: localhost is ")
        assert receiver.sni == []  # nothing was sent
    finally:
        await sender.close()
