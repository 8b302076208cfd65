"""Who is on the other end of a connection, and the address its limits count against.

Invariant: `client` is the unit per-address limits (connections, refused keys)
count: an IPv4 address, or an IPv6 /64, since one host is given a whole /64 and
may use any address in it. An IPv4 address mapped into IPv6 counts as itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

__all__ = ["Peer"]


@dataclass(frozen=True, slots=True)
class Peer:
    host: str
    port: int

    @classmethod
    def of(cls, writer: asyncio.StreamWriter) -> Peer:
        """The remote end of an accepted TCP connection."""
        name = writer.get_extra_info("peername")
        if isinstance(name, tuple) and len(name) >= 2:
            return cls(str(name[0]), int(name[1]))
        return cls(str(name), 0)

    @property
    def client(self) -> str:
        """The address per-address limits count against (see module docstring)."""
        try:
            address = ipaddress.ip_address(self.host.split("%", 1)[0])  # no IPv6 zone
        except ValueError:
            return self.host
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
