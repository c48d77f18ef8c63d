"""The webhook address policy shared by the gateway and the notifier (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from vidgen_common.webhook_targets import (
    AllowList,
    TargetRefused,
    check_events,
    check_url,
    refused_reason,
)

NONE = AllowList()

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",  # noqa: S104 (an address refused, not bound)
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
]

PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refused_reason(ipaddress.ip_address(address)) is not None
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused, match="public addresses only"):
        check_url(f"https://{host}/hook", production=True, allowed=NONE)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refused_reason(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    assert check_url(f"https://{host}:8443/h?x=1", production=True, allowed=NONE).port == 8443


def test_reasons_name_the_kind_of_address() -> None:
    def reason(a: str) -> str:
        return refused_reason(ipaddress.ip_address(a)) or ""

    assert "loopback" in reason("127.0.0.1")
    assert "link-local" in reason("169.254.169.254")
    assert "private" in reason("10.0.0.1")
    assert "unique local" in reason("fc00::1")
    assert "loopback" in reason("::ffff:127.0.0.1")
    assert "inside" in reason("::ffff:127.0.0.1")


def test_the_allow_list_admits_hosts_addresses_and_networks() -> None:
    allowed = AllowList.parse(" localhost, 127.0.0.1 ,10.0.0.0/8, ::1,, ")
    assert check_url("http://127.0.0.1:9/x", production=False, allowed=allowed).host == "127.0.0.1"
    assert check_url("http://10.9.8.7/x", production=False, allowed=allowed)
    assert (
        check_url("http://[::1]:8080/x", production=False, allowed=allowed).host_header
        == "[::1]:8080"
    )
    assert allowed.admits("LOCALHOST.", ipaddress.ip_address("127.0.0.2"))
    assert not allowed.admits("other", ipaddress.ip_address("192.168.0.1"))
    with pytest.raises(TargetRefused):
        check_url("http://192.168.0.1/x", production=False, allowed=allowed)


def test_names_are_not_resolved_at_registration() -> None:
    # a name is checked on the address the notifier resolves when it sends
    url = check_url("https://localhost/hook", production=True, allowed=NONE)
    assert (url.host, url.port, url.path, url.host_header) == (
        "localhost",
        443,
        "/hook",
        "localhost",
    )


@pytest.mark.parametrize(
    ("url", "production", "message"),
    [
        ("http://example.com/x", True, "https in production"),
        ("ftp://example.com/x", False, "https://"),
        ("https:///x", False, "no host"),
        ("https://user:pw@example.com/x", False, "credentials"),
        ("https://example.com/x#frag", False, "fragment"),
        ("https://example.com:99999/x", False, "malformed"),
        ("https://exa mple.com/x", False, "white space"),
        ("not a url", False, "white space"),
        ("https://example.com/" + "a" * 3000, False, "longer"),
    ],
)
def test_malformed_or_unsafe_urls_are_refused(url: str, production: bool, message: str) -> None:
    with pytest.raises(TargetRefused, match=message):
        check_url(url, production=production, allowed=NONE)


def test_http_is_allowed_outside_production() -> None:
    assert check_url("http://example.com/x", production=False, allowed=NONE).port == 80


def test_event_types() -> None:
    assert check_events(None) == [
        "generation.completed",
        "generation.failed",
        "generation.cancelled",
    ]
    assert check_events(["generation.progressed", "generation.progressed"]) == [
        "generation.progressed"
    ]
    with pytest.raises(TargetRefused, match=r"unknown event type 'generation\.nope'"):
        check_events(["generation.nope"])
    with pytest.raises(TargetRefused, match="at least one"):
        check_events([])
