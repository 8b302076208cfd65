"""Talking to the API as a client: the base path, people with tokens, the error shape."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BASE", "Person", "admitted", "assert_error", "free_port", "listening"]

BASE = "/api/live-streaming"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Person:
    id: uuid.UUID
    token: str
    name: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one JSON error shape, with this status (and code); returns its `error`."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


async def admitted(send: Callable[[], Awaitable[Any]], within_s: float = 90.0) -> Any:
    """The response to a request sent as a well-behaved client does: a 503 `overloaded`
    (admission control shedding a burst) is sent again after its Retry-After plus a
    random jitter (so a shed burst does not come back as the same burst), until
    `within_s` has passed; then the last answer, whatever it is."""
    deadline = time.monotonic() + within_s
    while True:
        r = await send()
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert_error(r, 503, "overloaded")
        await asyncio.sleep(float(r.headers["retry-after"]) * (1 + random.random()))
