"""Image URLs come from the API's answers, so a hostile or compromised answer could point the
downloader at this machine or its network: loopback, private ranges, link-local (cloud metadata
at 169.254.169.254), multicast. For the real Mapillary source such hosts are refused before any
request; the synthetic source and the tests serve images on 127.0.0.1 and allow them.

The check resolves the name once and refuses when any address is not public. A name that
resolves differently a moment later (DNS rebinding) is not covered: that would need the
connection pinned to the checked address.
"""

from __future__ import annotations

import ipaddress
import socket


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    shared (100.64/10), reserved, unspecified or multicast ones (IPv4-mapped IPv6 judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def non_public_host(host: str, port: int | None) -> str | None:
    """Why `host` must not be fetched from (None when every address it resolves to is public).
    A name that does not resolve is left to the download, which reports it as a transport error."""
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = info[4][0]
        if not is_public_address(address):
            return f"URL host resolves to a non-public address ({address}: loopback, private, link-local or reserved)"
    return None
