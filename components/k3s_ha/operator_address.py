"""`auto` in sshAllowedCidrs / apiAllowedCidrs: the public IPv4 address of the machine running
Pulumi, as a /32.

Resolved on every run (preview and up) by asking an address echo service, so it suits a
developer's stack only: from CI, or any machine whose address changes, every run opens the
firewall to a new address and every preview shows a diff. The resolver is replaceable
(`parse_cluster_args(..., resolve_operator_address=...)`, or `resolver` here for the whole
process), so tests never reach the network.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections.abc import Callable

AUTO = "auto"
"""The list item that stands for the operator's own address."""
CHECKIP_URL = "https://checkip.amazonaws.com"
"""Answers with the caller's public IPv4 address and a newline."""
TIMEOUT_SECONDS = 5.0

Resolver = Callable[[], str]
"""Returns the operator's public IPv4 address; raises OperatorAddressError when it cannot."""


class OperatorAddressError(RuntimeError):
    """The address could not be learned; the message says why."""


def checkip(url: str = CHECKIP_URL, timeout: float = TIMEOUT_SECONDS) -> str:
    """GET `url` and return the IPv4 address it answers with."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a fixed https URL)
            body = response.read(64)
    except (OSError, ValueError) as error:  # URLError, timeouts and refused connections are OSErrors
        raise OperatorAddressError(f"no answer from {url} within {timeout:g}s ({error})") from None
    text = body.decode("ascii", errors="replace").strip()
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise OperatorAddressError(f"{url} answered {text[:40]!r}, which is not an IPv4 address") from None
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        raise OperatorAddressError(f"{url} answered {address}, which cannot be a client's address")
    return str(address)


resolver: Resolver = checkip
"""The resolver K3sCluster uses unless one is passed to parse_cluster_args."""
