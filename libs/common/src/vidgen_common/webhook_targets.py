"""Where a webhook may be sent: the address policy shared by the gateway and the notifier.

Pure (no I/O): the gateway refuses a bad ``webhookUrl`` at once, the notifier refuses a bad
endpoint at registration and checks every address it resolved before connecting to it.

- :func:`check_url` judges a URL as typed: ``https`` (``http`` too outside production), a
  host, no credentials in it, and no literal address that :func:`refused_reason` refuses
  (unless the allow list admits it). A *name* is not resolved here: the notifier resolves it
  when it sends, and checks the address it actually connects to.
- :func:`refused_reason` says why an address is not a public one (loopback, private,
  link-local, multicast, unspecified, reserved, shared address space, …), looking through
  IPv4-mapped, 6to4 and Teredo IPv6 forms to the IPv4 address inside.
- :class:`AllowList` (``VIDGEN_WEBHOOK_ALLOWED_TARGETS``: hosts, IPs and CIDRs,
  comma-separated; empty by default) admits targets the policy would refuse, for development
  and tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

# Ranges not covered by the ``ipaddress`` flags in every Python version, named for the error.
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_BENCHMARK = ipaddress.ip_network("198.18.0.0/15")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(ValueError):
    """A webhook URL or address that may not be used; the message says why."""


@dataclass(frozen=True)
class AllowList:
    """Targets admitted although the policy would refuse them: host names (exact, case
    insensitive), addresses and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str] | str) -> AllowList:
        """From ``"localhost, 127.0.0.1, 10.0.0.0/8, ::1"`` (or a list of such entries)."""
        items = entries.split(",") if isinstance(entries, str) else entries
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in items:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def admits_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def admits_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def admits(self, host: str, address: IPAddress) -> bool:
        """The name the URL gave, or the address it resolved to, is on the list."""
        return self.admits_host(host) or self.admits_address(address)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, Teredo's
    client, NAT64 ``64:ff9b::a.b.c.d``), else ``None``."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_reason(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to ``address`` (``None``: it is a public address)."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = refused_reason(inner)
        return None if reason is None else f"{reason} (inside {address})"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "a unique local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _BENCHMARK:
        return "a benchmarking address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def check_address(host: str, address: IPAddress, allowed: AllowList) -> None:
    """Raise :class:`TargetRefused` unless ``address`` (resolved from ``host``) may be used."""
    reason = refused_reason(address)
    if reason is not None and not allowed.admits(host, address):
        raise TargetRefused(
            f"{host} is {address}, {reason}; webhooks go to public addresses only "
            "(VIDGEN_WEBHOOK_ALLOWED_TARGETS admits others)"
            if host != str(address)
            else f"{address} is {reason}; webhooks go to public addresses only "
            "(VIDGEN_WEBHOOK_ALLOWED_TARGETS admits others)"
        )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host spells literally (``[::1]`` included), else ``None``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class WebhookUrl:
    """A URL that passed :func:`check_url`: its parts, as the sender needs them."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        """``Host`` as the URL spells it (the port only when it is not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str, *, production: bool, allowed: AllowList) -> WebhookUrl:
    """The URL's parts, or :class:`TargetRefused` saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise TargetRefused("the URL contains white space or control characters")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with https://")
    if scheme == "http" and production:
        raise TargetRefused("the URL must be https in production")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not contain credentials")
    if parts.fragment:
        raise TargetRefused("the URL must not contain a fragment")
    address = literal_address(host)
    if address is not None:
        check_address(host, address, allowed)
        host = str(address)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookUrl(url, scheme, host, port or (443 if scheme == "https" else 80), path)


EVENT_TYPES = (
    "generation.completed",
    "generation.failed",
    "generation.cancelled",
    "generation.progressed",
)
"""The webhook event types a user may subscribe to (the payload's ``type``)."""

DEFAULT_EVENTS = ("generation.completed", "generation.failed", "generation.cancelled")
"""What an endpoint receives when it names no events: the terminal ones."""


def check_events(events: Iterable[str] | None) -> list[str]:
    """The event types, deduplicated in the order given (the default when ``None``), or
    :class:`TargetRefused` naming the unknown one."""
    if events is None:
        return list(DEFAULT_EVENTS)
    chosen: list[str] = []
    for event in events:
        if event not in EVENT_TYPES:
            raise TargetRefused(f"unknown event type {event!r}; known: {', '.join(EVENT_TYPES)}")
        if event not in chosen:
            chosen.append(event)
    if not chosen:
        raise TargetRefused("name at least one event type")
    return chosen


__all__ = [
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "AllowList",
    "TargetRefused",
    "WebhookUrl",
    "check_address",
    "check_events",
    "check_url",
    "embedded_ipv4",
    "literal_address",
    "refused_reason",
]
