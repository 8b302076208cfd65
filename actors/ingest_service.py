"""The RTMP ingest's logic: who may publish, a media pipeline per publishing stream,
and what happens when a publisher drops.

`IngestService` runs an `RtmpIngestServer` and decides who may publish by the key's
stream (`IngestRecords.stream_for_key`):
- unknown key, or an app other than "live": refused;
- ended stream, or one its owner is ending (`finish`): refused, and an
  `ingest_refused` event is recorded on it;
- created stream: started (`StreamControl.start`: publishing starts a stream), under
  the same live-stream quota as the API's start: over it, refused, logged, and an
  `ingest_refused` event (reason `too_many_live_streams`) tells the owner why;
- live stream: accepted. A stream or key already publishing is refused by the server.

A publisher that drops does not end the stream: it may reconnect with the same key
within `reconnect_grace_s`, and its stream's pipeline continues (the playlists go on
after an EXT-X-DISCONTINUITY). Once the grace period passes without a publisher and
what the last one sent is published, the stream is ended with reason
`publisher_timeout`.

Its owner ending a stream goes the same way, at once: before the API ends it, it asks
`finish(stream_id, drain_s)`, which takes no more of the publisher's bytes, lets the
segmenter cut what arrived (the last segment is partial) and waits, at most `drain_s`,
until every segment is published; then it closes the pipeline. So the stream ends only
after its last frame is in the playlists, and the VOD has every frame the publisher
sent; what the bound cuts off is not published. Moderation (`policy_violation`) does
not wait: the pipeline stops first, then ends the stream.

However a stream ends (its owner, a platform moderator resolving a report with
`end_stream` or `suspend`, the NSFW check, `publisher_timeout`), the server hangs up
on its publisher once the pipeline took what it will publish: the connection closes
(the encoder stops, its connection slot is free) and, the stream being ended, a
reconnect with its key is refused.

No Ray and no database here. What the service needs from the cluster is three seams,
wired from `Settings` in `actors.ingest_actor`: `IngestRecords` (Postgres),
`StreamControl` (the stream actors) and `PipelineFactory` (a `StreamPipeline` over
the media worker pool).

Invariants:
- At most one pipeline per stream; a reconnect within the grace period reuses it and
  cancels the grace timer.
- A stream is ended for `publisher_timeout` only after its pipeline drained.
- While a stream is being finished, its key is refused and its pipeline gets no grace
  period; afterwards it has no pipeline (a publish that comes back because ending it
  failed opens a new one, which continues from Postgres).
- A publisher is hung up only after its reader stopped taking bytes (`finish` after
  its drain), so the hang-up never loses what the pipeline was to publish.
- Stopping the service cuts off the publishers and closes every pipeline; it does not
  end streams (a restarted ingest resumes them when their publishers reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from actors.ingest_ports import (
    Finished,
    IngestRecords,
    Pipeline,
    PipelineFactory,
    StreamControl,
)
from lumalive.errors import RateLimited
from lumalive.status import StreamStatus
from media.rtmp import FlvReader, IngestLimits, IngestSession, RtmpIngestServer
from media.segmenter import InvalidSourceError

__all__ = ["IngestService"]

log = logging.getLogger(__name__)

# How long End lets a publisher's last bytes arrive before it stops taking them
# (`IngestService._settle`).
_SETTLE_S = 2.0


class IngestService:
    def __init__(
        self,
        records: IngestRecords,
        streams: StreamControl,
        pipelines: PipelineFactory,
        *,
        reconnect_grace_s: float,
        host: str = "127.0.0.1",
        port: int = 0,
        rtmp_limits: IngestLimits | None = None,
    ) -> None:
        """`port` 0 picks a free port (`start()` returns it); `rtmp_limits` bound what
        publishers may do (`IngestLimits()` when None)."""
        self._records = records
        self._streams = streams
        self._pipeline_factory = pipelines
        self._grace_s = reconnect_grace_s
        self._server = RtmpIngestServer(
            host, port, self.authorize, self.on_session, limits=rtmp_limits
        )
        self._owners: dict[str, UUID] = {}
        self._pipelines: dict[str, Pipeline] = {}
        self._sessions: dict[str, IngestSession] = {}
        self._readers: dict[str, FlvReader] = {}
        self._grace: dict[str, asyncio.Task[None]] = {}
        self._finishing: dict[str, asyncio.Task[Finished]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; returns the bound port."""
        await self._server.start()
        return self._server.port

    async def stop(self) -> None:
        """Stop listening (publishers are cut off), then the pipelines."""
        await self._server.stop()
        pending = [*self._grace.values(), *self._finishing.values(), *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self._pipelines.values()), return_exceptions=True)
        self._pipelines.clear()

    def status(self) -> dict[str, Any]:
        """For operators and tests: who is publishing, each pipeline, who may reconnect."""
        return {
            "port": self._server.port,
            "sessions": {sid: s.stats for sid, s in self._sessions.items()},
            "pipelines": {sid: p.status() for sid, p in self._pipelines.items()},
            "grace": sorted(self._grace),
            "finishing": sorted(self._finishing),
        }

    async def finish(self, stream_id: str, drain_s: float) -> Finished:
        """Its owner is ending the stream: take no more of its publisher's bytes and
        publish what it sent (at most `drain_s`), then close its pipeline. The caller
        ends the stream afterwards. Concurrent calls share one drain."""
        task = self._finishing.get(stream_id)
        if task is None:
            pipeline = self._pipelines.get(stream_id)
            if pipeline is None:  # not publishing, nor waiting for its publisher
                return Finished(drained=True, waited_s=0.0)
            task = asyncio.create_task(self._finish(stream_id, pipeline, drain_s))
            self._finishing[stream_id] = task
            task.add_done_callback(lambda _: self._finishing.pop(stream_id, None))
        return await asyncio.shield(task)  # a caller that gives up leaves the drain running

    # --- admission ------------------------------------------------------------------

    async def authorize(self, app: str, key: str) -> str | None:
        """The stream id a key publishes to, or None to refuse (see module docstring)."""
        if app != "live":
            return None
        stream = await self._records.stream_for_key(key)
        if stream is None:
            return None
        status = stream.status
        if status == StreamStatus.ENDED:
            await self._records.add_event(
                stream.id, stream.owner_id, "ingest_refused", {"reason": "stream_ended"}
            )
            return None
        if status == StreamStatus.CREATED:
            try:
                status = await self._start_stream(stream.id, stream.owner_id)
            except RateLimited as refusal:  # the owner's live-stream quota
                log.warning("stream %s: publish refused: %s", stream.id, refusal.message)
                await self._records.add_event(
                    stream.id,
                    stream.owner_id,
                    "ingest_refused",
                    {"reason": refusal.code, "message": refusal.message},
                )
                return None
        if status != StreamStatus.LIVE:
            return None
        if str(stream.id) in self._finishing:  # its owner is ending it
            await self._records.add_event(
                stream.id, stream.owner_id, "ingest_refused", {"reason": "stream_ending"}
            )
            return None
        self._owners[str(stream.id)] = stream.owner_id
        return str(stream.id)

    async def on_session(self, session: IngestSession) -> None:
        """An accepted publish: open its reader now (so it gets every byte) and run it."""
        sid = session.stream_id
        reader = session.reader()
        grace = self._grace.pop(sid, None)
        if grace is not None:
            grace.cancel()
        pipeline = self._pipelines.get(sid)
        if pipeline is None or pipeline.stopped:
            pipeline = await self._open_pipeline(sid)
        self._sessions[sid] = session
        self._readers[sid] = reader
        self._spawn(self._run_session(pipeline, session, reader))

    async def _start_stream(self, sid: UUID, owner: UUID) -> StreamStatus:
        """created -> live; the status the stream is in afterwards."""
        if await self._streams.start(sid, owner):
            return StreamStatus.LIVE
        row = await self._records.stream(sid, owner)  # raced with the owner's own start
        return StreamStatus(row["status"]) if row else StreamStatus.ENDED

    # --- one publish ----------------------------------------------------------------

    async def _open_pipeline(self, sid: str) -> Pipeline:
        stream = await self._records.stream(UUID(sid), self._owners[sid])
        assert stream is not None, "authorize found it a moment ago"

        async def end_stream(reason: str) -> None:
            await self._end_stream(sid, reason)

        pipeline = await self._pipeline_factory(
            stream, end_stream=end_stream, on_stop=lambda: self._close_input(sid)
        )
        self._pipelines[sid] = pipeline
        return pipeline

    async def _run_session(
        self, pipeline: Pipeline, session: IngestSession, reader: FlvReader
    ) -> None:
        sid = session.stream_id
        owner = pipeline.owner_id
        await self._event(sid, owner, "ingest_connected", {})
        try:
            await pipeline.ingest(reader, started_at=session.stats.started_at)
        except InvalidSourceError as e:
            log.warning("stream %s: unusable input: %s", sid, e)
            await self._event(sid, owner, "ingest_error", {"error": str(e)})
        finally:
            reader.close()
        # The reader may have stopped first (unusable input, stream ended): the
        # publisher is only gone when its session ends.
        await session.wait_closed()
        if self._sessions.get(sid) is session:
            del self._sessions[sid]
            self._readers.pop(sid, None)
        await self._event(sid, owner, "ingest_disconnected", {"reason": session.end_reason})
        if sid in self._finishing:
            return  # `finish` closes the pipeline once it drained
        if pipeline.stopped or self._pipelines.get(sid) is not pipeline:
            self._forget_pipeline(sid, pipeline)
        elif sid not in self._sessions and sid not in self._grace:
            self._grace[sid] = asyncio.create_task(self._grace_period(sid, pipeline))

    async def _grace_period(self, sid: str, pipeline: Pipeline) -> None:
        """End the stream if no publisher comes back in time (after publishing what the
        last one sent). A reconnect cancels this task."""
        await asyncio.sleep(self._grace_s)  # a reconnect cancels the task here
        await pipeline.drain()
        if self._grace.get(sid) is not asyncio.current_task():
            return
        del self._grace[sid]
        log.info("stream %s: no publisher for %.0f s; ending it", sid, self._grace_s)
        await self._end_stream(sid, "publisher_timeout")
        self._forget_pipeline(sid, pipeline)

    async def _finish(self, sid: str, pipeline: Pipeline, drain_s: float) -> Finished:
        began = time.monotonic()
        grace = self._grace.pop(sid, None)
        if grace is not None:  # the publisher had dropped: nothing more to wait for
            grace.cancel()
        await self._settle(sid, min(_SETTLE_S, drain_s))
        self._finish_input(sid)
        drained = True
        try:
            async with asyncio.timeout(drain_s):
                await pipeline.drain()
        except TimeoutError:
            drained = False
            log.warning(
                "stream %s: ending it before its last segments were published (%.0f s)",
                sid,
                drain_s,
            )
        self._hang_up(sid, "stream_ended")  # it read all it will: the publisher may go
        self._forget_pipeline(sid, pipeline)  # the stream ends next: nothing more to publish
        return Finished(drained, round(time.monotonic() - began, 3))

    async def _settle(self, sid: str, bound_s: float) -> None:
        """Let a publisher that is done be read to its end before its input is cut: what it
        sent just before End may still wait in the socket, behind a busy event loop. One
        still sending is cut after `bound_s`."""
        session = self._sessions.get(sid)
        if session is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound_s):
                await session.wait_closed()

    async def _end_stream(self, sid: str, reason: str) -> None:
        """End the stream (as the API does), unless it is not live any more."""
        owner = self._owners.get(sid)
        if owner is None:
            return
        row = await self._records.stream(UUID(sid), owner)
        if row is not None and row["status"] == StreamStatus.LIVE:  # else e.g. its owner ended it
            await self._streams.end(UUID(sid), owner, reason)
        self._close_input(sid)
        self._hang_up(sid, reason)

    def _close_input(self, sid: str) -> None:
        """Stop reading a stream's publisher (the stream is over; `_end_stream` then
        hangs up on it)."""
        reader = self._readers.get(sid)
        if reader is not None:
            reader.close()

    def _hang_up(self, sid: str, reason: str) -> None:
        """Close the connection of the stream's RTMP publisher, if one is connected (its
        session ends with `reason`)."""
        if self._server.hang_up(sid, reason):
            log.info("stream %s: hung up on its publisher (%s)", sid, reason)

    def _finish_input(self, sid: str) -> None:
        """Take no more of a stream's publisher's bytes, but read what arrived: the
        segmenter reads EOF after it and cuts the last, partial, segment."""
        reader = self._readers.get(sid)
        if reader is not None:
            reader.finish()

    def _forget_pipeline(self, sid: str, pipeline: Pipeline) -> None:
        if self._pipelines.get(sid) is pipeline:
            del self._pipelines[sid]
        self._spawn(pipeline.close())

    async def _event(self, sid: str, owner: UUID, kind: str, data: dict[str, Any]) -> None:
        try:
            await self._records.add_event(UUID(sid), owner, kind, data)
        except Exception:  # noqa: BLE001 - an event must not stop the media
            log.exception("stream %s: recording %s failed", sid, kind)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
