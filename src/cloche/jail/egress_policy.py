"""Egress policy: which ``host:port`` a jailed run may CONNECT to, and which addresses are never reached.

Pure decisions, no sockets: the host proxy (``egress_proxy_host.py``) asks them for every request, and the
server asks ``registry_addresses`` once at start-up.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def normalize_host(host: str) -> str | None:
    """Lower-case, strip one trailing dot; None unless it is a plain ASCII DNS name.

    Non-ASCII is refused rather than IDNA-encoded: clients send the ``xn--`` form, and a second
    encoding step here could make the name we check differ from the name we resolve.
    """
    if not host.isascii():
        return None
    host = host.lower().removesuffix(".")
    valid = 0 < len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))
    return host if valid else None


def is_ip_literal(host: str) -> bool:
    """True for any spelling the resolver would treat as an address (incl. ``2130706433``, ``0x7f.1``)."""
    candidate = host.strip("[]").split("%", 1)[0]
    # inet_aton also accepts the legacy short/hex/octal forms that getaddrinfo would honour.
    for parse in (ipaddress.ip_address, socket.inet_aton):
        with contextlib.suppress(ValueError, OSError):
            parse(candidate)
            return True
    # No real TLD is numeric, so an all-digit last label is an address in disguise.
    return candidate.rstrip(".").rsplit(".", 1)[-1].isdigit()


def address_refusal(address: str | IPAddress) -> str | None:
    """Why an address must not be reached, or None when it is a public unicast address.

    IPv6 forms that embed IPv4 (mapped, compatible, NAT64, 6to4, Teredo) are judged by the IPv4
    inside, so ``::ffff:127.0.0.1`` is loopback, not "some IPv6 address".
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "unparseable"
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])  # a scope id does not change the verdict
        embedded: list[ipaddress.IPv4Address] = []
        compatible = ip.packed[:12] == bytes(12) and int(ip) > 1  # deprecated ::a.b.c.d
        translated = ip.ipv4_mapped is not None or ip in _NAT64
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if compatible or ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(ip.packed[12:]))
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        for inner in embedded:
            reason = address_refusal(inner)
            if reason is not None:
                return reason
        if compatible:
            return "ipv4_compatible"  # nothing legitimate uses it, even with a public IPv4 inside
        if translated:
            return None  # judged by the IPv4 inside; Python calls these ranges non-global
        if ip.is_site_local:
            return "site_local"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link_local"),  # includes 169.254.169.254, the cloud metadata service
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "cgnat"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not_global"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _parse_rule(entry: str) -> tuple[str, int, bool]:
    """``host[:port]`` or ``*.suffix[:port]`` -> (host or suffix, port, is_wildcard)."""
    text = entry.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, "443"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"egress allow entry {entry!r}: port must be 1-65535")
    wildcard = host.startswith("*.")
    name = normalize_host(host[2:] if wildcard else host)
    if name is None or is_ip_literal(name):
        raise ValueError(f"egress allow entry {entry!r}: need a DNS name (no addresses, no non-ASCII)")
    return name, int(port_text), wildcard


@dataclass(frozen=True)
class EgressPolicy:
    """Which ``host:port`` pairs a run may CONNECT to. A bare host means port 443.

    ``*.example.org`` matches any name below example.org (not example.org itself).
    """

    allow: tuple[str, ...] = ()
    # With an empty allowlist: still run the proxy, refusing everything, so a run's attempts are answered 403
    # and listed in ``egress_denied`` (False: no proxy and no network at all).
    report_refusals: bool = False
    _rules: tuple[tuple[str, int, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow, str):  # EgressPolicy("pypi.org") would allow "p", "y", ...
            raise TypeError("EgressPolicy.allow is a tuple of entries, not a string")
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "_rules", tuple(_parse_rule(entry) for entry in self.allow))

    @classmethod
    def none(cls) -> EgressPolicy:
        return cls(())

    def allows(self, host: str, port: int) -> bool:
        name = normalize_host(host)
        if name is None or is_ip_literal(name):
            return False
        return any(
            rule_port == port and (name.endswith("." + rule_host) if wildcard else name == rule_host)
            for rule_host, rule_port, wildcard in self._rules
        )


def registry_addresses(hosts: Sequence[str]) -> list[str]:
    """Addresses the registry names resolve to on this host, minus anything never worth trusting.

    Some networks answer registry names with a non-global address (a TLS-intercepting gateway); the
    operator's resolver is trusted for the registries' own names. Loopback, link-local (the cloud metadata
    endpoint), unspecified and multicast addresses are never trusted.
    """
    found: set[str] = set()
    for entry in hosts:
        host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if host.startswith("*."):
            continue
        try:
            infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]))
            never = address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast
            if not never and not address.is_global:
                found.add(str(address))
    return sorted(found)
