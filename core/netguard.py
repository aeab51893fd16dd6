"""Outbound address policy for webhooks: which URLs a tenant may make the service call, and where exactly.

A URL is checked twice, at registration and again just before each send, and the send connects to the
address that the second check approved (never to a name re-resolved by the HTTP client), so a name that
resolves somewhere public at registration and to loopback later (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

# Names that reach cloud metadata services or this host whatever they resolve to here.
BLOCKED_NAMES = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}
)
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")


class UnsafeUrl(ValueError):
    """A URL the service refuses to call; `reason` is a short class stored in the delivery log."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """A checked URL and the one address to connect to for it."""

    url: str
    scheme: str
    host: str  # as the Host header and TLS SNI want it (IDNA-encoded, no brackets)
    port: int
    address: IPAddress

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the approved address: what the HTTP client connects to."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return parts._replace(netloc=f"{host}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _literal(host: str) -> IPAddress | None:
    """An IP written in any spelling the C resolver accepts: `127.1`, `2130706433`, `0x7f.1`, `::ffff:…`."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # the legacy BSD forms getaddrinfo also takes
    except OSError:
        return None


def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (literals without a lookup)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


_resolver: Resolver = system_resolve


def set_resolver(resolver: Resolver | None) -> Resolver:
    """Replace the resolver (tests point it at a fake; None restores the system's); returns the old one."""
    global _resolver
    old, _resolver = _resolver, resolver or system_resolve
    return old


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, multicast, reserved or unspecified.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by the address they carry.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in _SIXTOFOUR and address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def parse(url: str) -> tuple[str, str, int]:
    """Scheme, IDNA host and port of a well-formed http(s) URL, or UnsafeUrl saying what is wrong."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("url must not contain spaces or control characters", "invalid_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # `[::1`, a port out of range or not a number
        raise UnsafeUrl(f"url is malformed: {exc}", "invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("url must be an absolute http(s) URL", "invalid_url")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("url must not carry credentials (user:pass@)", "invalid_url")
    if port == 0:
        raise UnsafeUrl("url port must be 1-65535", "invalid_url")
    host = parts.hostname.rstrip(".")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeUrl(f"url host [{host}] is not an IPv6 address", "invalid_url") from None
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UnsafeUrl(f"url host {host!r} is not a valid host name", "invalid_url") from None
        if len(host) > 253 or not all(_valid_label(label) for label in host.split(".")):
            raise UnsafeUrl(f"url host {host!r} is not a valid host name", "invalid_url")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _valid_label(label: str) -> bool:
    """Letters, digits, inner hyphens; an `xn--` label must hold real punycode (`xn--` alone does not)."""
    if not _LABEL.fullmatch(label):
        return False
    if label.startswith("xn--"):
        try:
            return bool(label[4:].encode("ascii").decode("punycode"))
        except UnicodeError:
            return False
    return True


def _allowed(host: str, addresses: Iterable[IPAddress], allowed_hosts: Iterable[str]) -> bool:
    """Whether an admin listed this host (exact name or IP as written) or a network holding every address."""
    addresses = list(addresses)
    for entry in allowed_hosts:
        if "/" in entry:
            network = ipaddress.ip_network(entry, strict=False)
            if addresses and all(a in network for a in addresses):
                return True
        elif entry.lower().strip("[]").rstrip(".") == host:
            return True
    return False


def _own_names() -> set[str]:
    return {socket.gethostname().lower(), socket.getfqdn().lower()}


def check(url: str, allowed_hosts: Iterable[str] = ()) -> Target:
    """Parse, resolve and vet a webhook URL; the Target pins the address to connect to, or UnsafeUrl."""
    scheme, host, port = parse(url)
    allowed_hosts = list(allowed_hosts)
    named = _allowed(host, (), allowed_hosts)
    if not named and (host in BLOCKED_NAMES or host in _own_names()):
        raise UnsafeUrl(f"url host {host!r} names this service's own network", "blocked_address")
    try:
        addresses = _resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"url host {host!r} does not resolve ({type(exc).__name__})", "unresolvable") from None
    if not addresses:
        raise UnsafeUrl(f"url host {host!r} does not resolve", "unresolvable")
    if named or _allowed(host, addresses, allowed_hosts):
        return Target(url, scheme, host, port, addresses[0])
    blocked = [a for a in addresses if not is_public(a)]
    if blocked:
        raise UnsafeUrl(
            f"url host {host!r} resolves to a non-public address ({blocked[0]}); an admin can allow internal "
            "targets with TUNEPOOL_WEBHOOK_ALLOWED_HOSTS",
            "blocked_address",
        )
    return Target(url, scheme, host, port, addresses[0])
