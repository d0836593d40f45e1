"""IP address text as the enrichment stages compare it: parsed, an IPv4-mapped IPv6 address taken as
the IPv4 address it maps (``::ffff:10.0.0.5`` is 10.0.0.5, as the agent reports it)."""
from __future__ import annotations

import ipaddress


def parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when ``text`` is not one."""
    try:
        a = ipaddress.ip_address(text.strip().strip("[]"))
    except (ValueError, AttributeError):
        return None
    if a.version == 6 and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def canonical(text: str) -> str | None:
    """The address's canonical text, or None when ``text`` is not an address."""
    a = parse(text)
    return None if a is None else str(a)
