"""Remote-access switch and HTTP Basic authentication."""

from __future__ import annotations

import base64
import functools
import hmac
import ipaddress
from collections.abc import Mapping

from twisted.web.iweb import IRequest

REALM = "dwdaemon"


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Whether an address is loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback); cached,
    as it is asked on every request."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host in ("localhost",)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def client_host(request: IRequest) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", "") or ""


def check_basic(header: bytes | None, users: Mapping[str, str]) -> str | None:
    """The user name if ``header`` carries valid Basic credentials, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    expected = users.get(user)
    # Compare even for unknown users so that timing does not reveal which users exist.
    ok = hmac.compare_digest(password.encode(), (expected or "\0" + password).encode())
    return user if ok and expected is not None else None
