"""Which addresses a webhook may be sent to: the public internet only, outside development.

An endpoint URL is operator input, and the delivery worker runs inside the installation:
a target such as ``http://127.0.0.1:5432`` or ``http://169.254.169.254/`` (cloud metadata)
would make the server call its own internal services. So, unless ``allow_internal``
(development), every address a target resolves to must be globally routable
(``ipaddress``'s ``is_global``, not multicast, and the same for an IPv4 address embedded
in an IPv6 one: ``::ffff:127.0.0.1``, 6to4, NAT64).

It is checked twice: at registration (:meth:`TargetGuard.check_url`, a clear 422) and at
every delivery after resolving the name (:meth:`TargetGuard.resolve`), because DNS can
change after registration. The delivery then connects to the very address that was
checked (the name is kept for ``Host`` and TLS), so a second lookup cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from kickstand.cloud.webhooks.errors import TargetRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; tests give a fake one (DNS answers on demand).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

#: Names that are loopback by definition (RFC 6761), refused without asking DNS.
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
#: A registration waits this long for DNS; no answer: accepted, the delivery checks again.
REGISTRATION_DNS_TIMEOUT_S = 2.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_internal(address: IPAddress) -> str | None:
    """None for a public unicast address, else which kind of non-public address it is."""
    inner = _embedded_v4(address)
    if inner is not None and (why := why_internal(inner)) is not None:
        return why
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: ``address`` (checked) for the URL's ``host``."""

    host: str
    port: int
    address: IPAddress | None  # None: internal targets allowed, the client resolves

    def pinned_url(self, url: str) -> str:
        """``url`` with its host replaced by the checked address (same scheme, port, path)."""
        if self.address is None:
            return url
        parts = urlsplit(url)
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{literal}:{parts.port}" if parts.port is not None else literal
        return parts._replace(netloc=netloc).geturl()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None:
        raise TargetRefusedError(url, "the URL has no host")
    try:
        port = parts.port
    except ValueError as exc:  # a port outside 0–65535
        raise TargetRefusedError(parts.hostname, "the URL's port is invalid") from exc
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetGuard:
    #: True in development: receivers on 127.0.0.1 and the LAN are fine there.
    allow_internal: bool
    resolver: Resolver = system_resolver

    def _check(self, host: str, addresses: list[IPAddress]) -> None:
        if not addresses:
            raise TargetRefusedError(host, "the name resolves to no address")
        for address in addresses:
            why = why_internal(address)
            if why is not None:
                raise TargetRefusedError(host, f"{address} is {why}", address=str(address))

    def _check_name(self, host: str) -> IPAddress | None:
        """The literal address of ``host`` (checked), or None for a name."""
        name = host.rstrip(".").lower()
        if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
            raise TargetRefusedError(host, "localhost is loopback")
        literal = _literal(host)
        if literal is not None:
            self._check(host, [literal])
        return literal

    async def check_url(self, url: str) -> None:
        """At registration: refuse a URL whose host is, or resolves to, a non-public address.

        A name DNS cannot answer for now is accepted (it may be set up later); every
        delivery checks again.
        """
        if self.allow_internal:
            return
        host, port = _host_port(url)
        if self._check_name(host) is not None:
            return
        try:
            async with asyncio.timeout(REGISTRATION_DNS_TIMEOUT_S):
                addresses = await self.resolver(host, port)
        except (OSError, TimeoutError, UnicodeError):
            return
        self._check(host, addresses)

    async def resolve(self, url: str) -> Target:
        """At delivery: the address to connect to, every address of the name checked."""
        host, port = _host_port(url)
        if self.allow_internal:
            return Target(host, port, None)
        literal = self._check_name(host)
        if literal is not None:
            return Target(host, port, literal)
        try:
            addresses = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefusedError(host, f"the name does not resolve ({exc})") from exc
        self._check(host, addresses)
        return Target(host, port, addresses[0])
