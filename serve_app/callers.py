"""Who is calling: the user an access token names, with a `users` row made on first
sight, and the address a client called from (`client_address`).

A token outlives its account until it expires. A deleted user's id is remembered
in Postgres (sql/0004), so their token is refused with 401 `user_deleted` rather
than bringing the account back as an empty one: deleting a user (an operator's
ban, a person erasing their account) must stick, and a client that gets 401 signs
in again, which a deleted account cannot. Each replica re-checks a user at most
every `user_cache_s`.

Addresses. Behind a load balancer the socket's peer is the balancer, so per-address
limits (anonymous realtime connections) would put every client in one bucket. A peer
in `LUMALIVE_TRUSTED_PROXIES` (CIDRs; none by default) is taken at its word: the
client is the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy
(each proxy appends the address it saw; what is left of the nearest untrusted hop
is the client's to write, so never believed). A peer outside the list is the client,
whatever it sends.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Sequence
from uuid import UUID

from starlette.requests import HTTPConnection

from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.errors import Unauthorized
from lumalive.store import moderation, users

__all__ = ["Callers", "Networks", "client_address", "forwarded_client", "trusted_networks"]

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


class Callers:
    """One per API replica; remembers when it last saw each user's row."""

    def __init__(
        self,
        tokens: TokenService,
        db: Database,
        cache_s: float = 5.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._db = db
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._clock = clock
        self._checked: dict[UUID, float] = {}

    async def identify(self, token: str) -> UUID:
        """The token's user; Unauthorized if the token is forged, expired or malformed,
        or its user was deleted. A token's subject gets a users row on first sight
        (Supabase users arrive without one)."""
        user_id, moderator = self._tokens.verify_caller(token)
        now = self._clock()
        checked = self._checked.get(user_id)
        if checked is None or now - checked >= self._cache_s:
            async with self._db.acting(user_id) as conn:
                exists = await users.ensure_user(conn, user_id)
                if exists:  # a token's moderator claim, kept in Postgres (sql/0006)
                    await moderation.sync_token_moderator(conn, moderator)
            if not exists:
                self._checked.pop(user_id, None)
                raise Unauthorized("this account has been deleted", "user_deleted")
            if len(self._checked) >= self._max_entries:
                self._checked.clear()
            self._checked[user_id] = now
        return user_id


@functools.lru_cache(maxsize=8)
def trusted_networks(spec: str) -> Networks:
    """`LUMALIVE_TRUSTED_PROXIES` parsed: comma- or space-separated addresses and CIDRs
    (`10.0.0.0/8, 2001:db8::/32, 192.0.2.7`). ValueError names a malformed entry."""
    networks = []
    for entry in spec.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"not an address or CIDR in LUMALIVE_TRUSTED_PROXIES: {entry!r}"
            ) from None
    return tuple(networks)


def _address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """One X-Forwarded-For hop as an address (`[v6]:port` and `v4:port` too); None if
    it is none (`unknown`, an obfuscated name, garbage)."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:  # IPv4 with a port; IPv6 has more colons
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Networks) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], trusted: Networks
) -> str | None:
    """The client's address: `peer` unless it is a trusted proxy; then the rightmost
    hop of the `X-Forwarded-For` values (in header order) that is not one. A hop that
    is no address stops the walk at the proxy that reported it."""
    peer_address = _address(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, trusted):
        return peer
    client = peer_address
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def client_address(conn: HTTPConnection, trusted_proxies: str) -> str | None:
    """The address a request or WebSocket came from (see module docstring)."""
    peer = conn.client.host if conn.client else None
    trusted = trusted_networks(trusted_proxies)
    if not trusted:
        return peer
    return forwarded_client(peer, conn.headers.getlist("x-forwarded-for"), trusted)
