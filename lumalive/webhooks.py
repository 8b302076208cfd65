"""Webhooks without Ray or Postgres: event types, secrets, Standard Webhooks signatures,
the retry schedule and the check that keeps endpoints off private networks.

Signatures follow Standard Webhooks (standardwebhooks.com): a delivery carries
`webhook-id` (the event's id: the same on every retry and every endpoint, so a
receiver can drop duplicates), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
bytes that the secret `whsec_<base64>` encodes. The body is signed exactly as sent.

Delivery is at least once: a dispatcher that dies mid-POST leaves the delivery due
again (sql/0007), so a receiver may see an id twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lumalive.errors import Unprocessable

__all__ = [
    "EVENT_TYPES",
    "OWNER_EVENT_TYPES",
    "SECRET_PREFIX",
    "RetrySchedule",
    "UrlPolicy",
    "Resolver",
    "body_bytes",
    "new_secret",
    "sign",
    "signature_headers",
    "verify",
    "check_addresses",
    "check_url",
]

# What an endpoint may subscribe to (sql/0007 maps the internal events onto these).
EVENT_TYPES = frozenset(
    {
        "stream.started",
        "stream.ended",
        "stream.quality_degraded",
        "moderation.flagged",
        "report.created",
    }
)
# An owner's endpoint: not report.created, which goes to platform endpoints only (the
# moderators' queue; telling the reported broadcaster at once invites retaliation).
OWNER_EVENT_TYPES = EVENT_TYPES - {"report.created"}

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 24  # Standard Webhooks asks for 24 to 64 random bytes


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: one of the space-separated `v1,` signatures matches (in
    constant time) and the timestamp is within `tolerance_s` of now (against replays)."""
    try:
        msg_id, stamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        offered = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    expected = sign(secret, msg_id, stamp, body)
    return any(hmac.compare_digest(expected, sig) for sig in offered)


@dataclass(frozen=True)
class RetrySchedule:
    """Seconds to wait after each failed attempt before the next: attempt n (1-based)
    failed → wait `delays[n-1]`, scaled by a random factor in [1 - jitter, 1 + jitter]
    so that endpoints which failed together do not all retry in the same instant. After
    `len(delays) + 1` attempts the delivery has failed for good."""

    delays: Sequence[float]
    jitter: float = 0.2
    rng: Callable[[], float] = random.random  # [0, 1); a seam for the tests

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def retry_in(self, attempt: int) -> float | None:
        """After failed attempt `attempt`: seconds until the next, None to give up."""
        if attempt < 1 or attempt > len(self.delays):
            return None
        factor = 1.0 + self.jitter * (2.0 * self.rng() - 1.0)
        return max(0.0, self.delays[attempt - 1] * factor)


# A resolver that does not answer costs a registration (or an attempt) at most this.
_RESOLVE_TIMEOUT_S = 5.0

# host, port -> the addresses it resolves to (loop.getaddrinfo's shape, trimmed).
Resolver = Callable[[str, int], Awaitable[Iterable[str]]]


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class UrlPolicy:
    """Which endpoint URLs are acceptable. By default only https to public addresses:
    an endpoint is a URL that a user chooses and our servers POST to, so without this
    any user could make the cluster call its own private services (SSRF)."""

    allow_http: bool = False
    allow_private: bool = False


def check_addresses(addresses: Iterable[str], allow_private: bool) -> None:
    """Unprocessable unless every address is a public (global unicast) one: loopback,
    private, link-local (cloud metadata at 169.254.169.254), CGNAT, multicast and
    IPv4-mapped forms of them are refused."""
    found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not found:
        raise Unprocessable("the webhook host does not resolve", "webhook_unresolvable")
    if allow_private:
        return
    for address in found:
        mapped = getattr(address, "ipv4_mapped", None)
        public = (mapped or address).is_global and not (mapped or address).is_multicast
        if not public:
            raise Unprocessable(
                f"webhook URLs must not point at private or local addresses ({address})",
                "webhook_private_address",
            )


async def check_url(url: str, policy: UrlPolicy, resolve: Resolver | None = None) -> str:
    """`url` if LumaLive may POST to it under `policy`, else Unprocessable. Run at
    registration and again before every attempt (a name may resolve elsewhere later)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Unprocessable("the webhook URL is not a valid URL", "webhook_invalid_url") from None
    allowed = {"https", "http"} if policy.allow_http else {"https"}
    if parts.scheme not in allowed:
        raise Unprocessable("webhook URLs must use https", "webhook_insecure_url")
    if not parts.hostname:
        raise Unprocessable("the webhook URL has no host", "webhook_invalid_url")
    if parts.username or parts.password:
        raise Unprocessable("webhook URLs must not carry credentials", "webhook_invalid_url")
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            addresses = await (resolve or _system_resolver)(parts.hostname, port)
    except (OSError, TimeoutError):
        raise Unprocessable("the webhook host does not resolve", "webhook_unresolvable") from None
    check_addresses(addresses, policy.allow_private)
    return url


def body_bytes(payload: Any) -> bytes:
    """The JSON body of a payload, compact; what is signed is exactly what is sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
