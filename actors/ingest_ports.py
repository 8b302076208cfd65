"""What the RTMP/WHIP ingest (`actors.ingest_service.IngestService`) needs from the rest
of the system, as protocols: its Postgres records, a stream's lifecycle, a stream's media
pipeline. The service stays plain asyncio, testable with in-memory stand-ins of these;
`actors.ingest_actor` provides the real ones on Ray.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from lumalive.status import StreamStatus

__all__ = [
    "EndStream",
    "Finished",
    "IngestRecords",
    "KeyedStream",
    "Pipeline",
    "PipelineFactory",
    "StreamControl",
]

EndStream = Callable[[str], Awaitable[None]]
"""Ends a stream for a reason (`policy_violation`, `publisher_timeout`)."""


@dataclass(frozen=True, slots=True)
class KeyedStream:
    """The stream a stream key publishes to."""

    id: UUID
    owner_id: UUID
    status: StreamStatus

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KeyedStream:
        """From a `stream_for_key` row (id, user_id, status)."""
        return cls(row["id"], row["user_id"], StreamStatus(row["status"]))


class IngestRecords(Protocol):
    """What the ingest reads and writes in Postgres; each call is one transaction."""

    async def stream_for_key(self, key: str) -> KeyedStream | None: ...

    async def stream(self, stream_id: UUID, owner_id: UUID) -> dict[str, Any] | None:
        """The stream's row as its owner sees it (None: gone)."""
        ...

    async def add_event(
        self, stream_id: UUID, owner_id: UUID, kind: str, data: dict[str, Any]
    ) -> None: ...


class StreamControl(Protocol):
    """A stream's lifecycle, as the API changes it (through the stream's actor)."""

    async def start(self, stream_id: UUID, owner_id: UUID) -> bool:
        """created → live. False if the stream was not in `created` (a Conflict: e.g.
        its owner started or ended it meanwhile). Raises `RateLimited` if the owner
        has as many streams live as the quota allows."""
        ...

    async def end(self, stream_id: UUID, owner_id: UUID, reason: str) -> None:
        """live → ended (already ended: nothing to do), then release the stream's actor."""
        ...


class Pipeline(Protocol):
    """What the service uses of a stream's media pipeline (`StreamPipeline`)."""

    owner_id: UUID
    stopped: bool  # the stream is over for the pipeline: it publishes nothing more

    async def ingest(self, source: Any, *, started_at: float | None = None) -> None: ...

    async def drain(self) -> None:
        """Wait until the input being read has ended and every segment cut is published."""
        ...

    async def close(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Finished:
    """What `IngestService.finish` did before the stream ends."""

    drained: bool  # everything the publisher sent is published (or there was no pipeline)
    waited_s: float


class PipelineFactory(Protocol):
    async def __call__(
        self, stream: dict[str, Any], *, end_stream: EndStream, on_stop: Callable[[], None]
    ) -> Pipeline:
        """An open pipeline for the stream's row, continuing where an earlier publish of
        it left off. It calls `end_stream(reason)` to end the stream (moderation) and
        `on_stop()` once it stops publishing."""
        ...
