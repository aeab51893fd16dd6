"""The webhook address policy on its own: which addresses are public, and where a checked URL connects."""

from __future__ import annotations

import ipaddress

import pytest

from core import netguard


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("100.64.0.1", False),
        ("224.0.1.1", False),  # multicast, though "global"
        ("255.255.255.255", False),
        ("0.0.0.0", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert netguard.is_public(ipaddress.ip_address(address)) is public


def test_a_checked_url_pins_its_address_and_keeps_its_name() -> None:
    old = netguard.set_resolver(
        lambda host, port: [ipaddress.ip_address("2001:db8::1" if host == "v6.example" else "93.184.215.14")]
    )
    try:
        # 2001:db8::/32 is documentation space: refused like any non-global address.
        with pytest.raises(netguard.UnsafeUrl):
            netguard.check("https://v6.example/hook")
        target = netguard.check("https://Hooks.Example.:8443/a/b?c=1")
    finally:
        netguard.set_resolver(old)
    assert target.pinned_url == "https://93.184.215.14:8443/a/b?c=1"
    assert target.host == "hooks.example" and target.host_header == "hooks.example:8443"
