"""One webhook POST, to an address checked by the address policy and then connected to.

:class:`HttpSender` resolves the URL's host once, checks every address it got with
:func:`vidgen_common.webhook_targets.check_address` (a name resolving to a loopback, private,
link-local … address is refused unless ``VIDGEN_WEBHOOK_ALLOWED_TARGETS`` admits it), then
connects to an admitted address itself (the next one if it refuses the connection): the
request goes to ``scheme://<address>:port`` with the original ``Host`` header and, for
https, the original name as TLS SNI and as the name the certificate is verified against
(httpx's ``sni_hostname`` extension). So no second lookup can take the request elsewhere
(DNS rebinding). Redirects are never followed; the whole attempt (resolution included) is
bounded by ``VIDGEN_WEBHOOK_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Protocol

import httpx

from vidgen_common.webhook_targets import (
    AllowList,
    IPAddress,
    TargetRefused,
    WebhookUrl,
    check_address,
    literal_address,
)
from vidgen_notifier.outcomes import Answer

_KEEP_BODY = 300


class Sender(Protocol):
    """Sends one signed webhook; never raises for what the receiver or network did."""

    async def send(self, url: WebhookUrl, headers: dict[str, str], body: bytes) -> Answer: ...


class HttpSender:
    def __init__(
        self, allowed: AllowList, timeout_s: float, *, verify: ssl.SSLContext | bool = True
    ) -> None:
        """``verify``: the TLS trust (the system's by default; tests pass their own CA)."""
        self._allowed = allowed
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def resolve(self, url: WebhookUrl) -> list[IPAddress]:
        """The addresses that may be connected to, checked, in the resolver's order;
        :class:`TargetRefused` when none may be."""
        literal = literal_address(url.host)
        if literal is not None:
            check_address(url.host, literal, self._allowed)
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TargetRefused(f"{url.host} does not resolve: {exc.strerror}") from exc
        refused: TargetRefused | None = None
        admitted: list[IPAddress] = []
        for info in infos:
            address = literal_address(str(info[4][0]))
            if address is None or address in admitted:
                continue
            try:
                check_address(url.host, address, self._allowed)
            except TargetRefused as exc:
                refused = refused or exc
                continue
            admitted.append(address)
        if not admitted:
            raise refused or TargetRefused(f"{url.host} resolves to no address")
        return admitted

    async def send(self, url: WebhookUrl, headers: dict[str, str], body: bytes) -> Answer:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._send(url, headers, body)
        except TargetRefused as exc:
            return Answer(error=f"refused: {exc}")
        except TimeoutError:
            return Answer(error=f"timed out after {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Answer(error=f"{exc.__class__.__name__}: {exc}"[:500] or exc.__class__.__name__)
        except OSError as exc:
            return Answer(error=f"{exc.__class__.__name__}: {exc}"[:500])

    async def _send(self, url: WebhookUrl, headers: dict[str, str], body: bytes) -> Answer:
        addresses = await self.resolve(url)
        for address in addresses[:-1]:  # the next address when one refuses the connection
            try:
                return await self._post(address, url, headers, body)
            except httpx.ConnectError:
                continue
        return await self._post(addresses[-1], url, headers, body)

    async def _post(
        self, address: IPAddress, url: WebhookUrl, headers: dict[str, str], body: bytes
    ) -> Answer:
        host = f"[{address}]" if address.version == 6 else str(address)
        target = f"{url.scheme}://{host}:{url.port}{url.path}"
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = self._client.build_request(
            "POST",
            target,
            content=body,
            headers={**headers, "host": url.host_header},
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            text = b""
            async for chunk in response.aiter_bytes():
                text += chunk
                if len(text) >= _KEEP_BODY:
                    break
        finally:
            await response.aclose()
        ok = 200 <= response.status_code < 300
        snippet = None if ok else text[:_KEEP_BODY].decode("utf-8", "replace").strip() or None
        return Answer(
            status_code=response.status_code,
            error=snippet,
            retry_after=response.headers.get("retry-after"),
            location=response.headers.get("location"),
        )
