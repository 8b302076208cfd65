"""Where a WHIP peer connection can be reached: its host addresses and ICE servers.

aioice (aiortc's ICE) gathers a host candidate on every interface address except
127.0.0.1 and has no per-connection setting for it. A server that publishes on
loopback only (the default, like the RTMP port), or on one chosen address of a
machine with several, replaces aioice's address lookup once per process
(`use_host_addresses`); every peer connection made afterwards in that process uses
those addresses. STUN/TURN servers (`IceServer`) add server-reflexive and relayed
candidates where the server sits behind NAT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCIceServer

__all__ = ["IceServer", "use_host_addresses"]

_AIOICE_DEFAULT = aioice.ice.get_host_addresses


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server (`stun:host:port`, `turn:host:port?transport=udp`)."""

    url: str
    username: str | None = None
    credential: str | None = None

    def to_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather host candidates on exactly `addresses` in this process (None or empty:
    aioice's default, every interface address but loopback)."""
    if not addresses:
        aioice.ice.get_host_addresses = _AIOICE_DEFAULT
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
