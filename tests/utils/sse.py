"""An EventSource-like client for the SSE tests (never a test itself)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx

from tests.utils.api import BASE

__all__ = ["SSE"]


class SSE:
    """An EventSource-like subscriber: a background task parses frames into a queue."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        sid: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        self.client, self.url = client, f"{BASE}/{sid}/events/stream"
        self.headers, self.params = headers or {}, params or {}
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.raw: list[str] = []
        self.status = 0

    async def __aenter__(self) -> SSE:
        self._stack = contextlib.AsyncExitStack()
        self.response = await self._stack.enter_async_context(
            self.client.stream("GET", self.url, headers=self.headers, params=self.params)
        )
        self.status = self.response.status_code
        if self.status == 200:
            self._task = asyncio.create_task(self._read())
            self._stack.push_async_callback(self._stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def _read(self) -> None:
        frame: dict[str, Any] = {}
        try:
            async for line in self.response.aiter_lines():
                self.raw.append(line)
                if line == "":
                    if "data" in frame:
                        frame["data"] = json.loads(frame["data"])
                        frame["at"] = time.monotonic()
                        await self.events.put(frame)
                    frame = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    frame[key] = value.removeprefix(" ")
        finally:
            await self.events.put(None)  # the server closed the stream

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - time.monotonic()))
            assert frame is not None, "stream closed"
            if pred(frame):
                return frame

    async def all(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every frame until the server closes the stream."""
        frames = []
        while (frame := await self.next(timeout)) is not None:
            frames.append(frame)
        return frames
