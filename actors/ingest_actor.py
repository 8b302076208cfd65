"""The RTMP ingest as one Ray actor: publishers in, per-stream media pipelines out.

`IngestService` (logic) runs `RtmpIngestServer` on `settings.rtmp_host:rtmp_port`,
decides who may publish, and runs a `StreamPipeline` per publishing stream over one
shared `MediaPool`. `IngestActor` is its Ray face: detached, named "ingest" in
namespace "lumalive", `num_cpus=0` (it waits on sockets and Postgres; the pool
workers do the CPU work), restarted by Ray if it dies (it serves again on its own and
each stream's pipeline resumes from Postgres when its publisher reconnects).

Who may publish (`authorize`), by the key's stream (`stream_for_key`, SECURITY DEFINER):
- unknown key, or an app other than "live": refused;
- ended stream: refused, and an `ingest_refused` event is recorded on it;
- created stream: started through its stream actor (publishing starts a stream);
- live stream: accepted. A stream or key already publishing is refused by the server.

A publisher that drops does not end the stream: it may reconnect with the same key
within `reconnect_grace_s`, and the playlists continue after an EXT-X-DISCONTINUITY.
Once the grace period passes without a publisher (and what it sent is published),
the stream is ended with reason `publisher_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import stream_actor
from actors.media_pipeline import StreamPipeline
from actors.media_pool import MediaPool
from lumalive.db import Database
from lumalive.errors import Conflict
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity, streams
from media.rtmp import IngestSession, RtmpIngestServer
from media.segmenter import InvalidSourceError

__all__ = ["IngestService", "IngestActor", "NAME", "start", "lookup", "stop"]

log = logging.getLogger(__name__)

NAME = "ingest"


class IngestService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db = Database(settings, pool_size=4)
        self._pool = MediaPool(settings)
        # Segmenters block on their publisher's bytes: one thread each, for as long
        # as the publish lasts, so not the event loop's small default pool.
        self._executor = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="segmenter")
        self._server = RtmpIngestServer(
            settings.rtmp_host, settings.rtmp_port, self.authorize, self.on_session
        )
        self._owners: dict[str, UUID] = {}
        self._pipelines: dict[str, StreamPipeline] = {}
        self._sessions: dict[str, IngestSession] = {}
        self._readers: dict[str, Any] = {}
        self._grace: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen; returns the bound port."""
        await self._server.start()
        return self._server.port

    async def stop(self) -> None:
        """Stop listening (publishers are cut off), then the pipelines and the pool."""
        await self._server.stop()
        for task in list(self._grace.values()) + list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._grace.values(), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self._pipelines.values()), return_exceptions=True)
        self._pipelines.clear()
        self._pool.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._db.dispose()

    def status(self) -> dict[str, Any]:
        """For operators and tests: who is publishing, each pipeline, the pool."""
        return {
            "port": self._server.port,
            "sessions": {sid: s.stats for sid, s in self._sessions.items()},
            "pipelines": {sid: p.status() for sid, p in self._pipelines.items()},
            "grace": sorted(self._grace),
            "pool": self._pool.status(),
        }

    # --- admission ------------------------------------------------------------------

    async def authorize(self, app: str, key: str) -> str | None:
        """The stream id a key publishes to, or None to refuse (see module docstring)."""
        if app != "live":
            return None
        async with self._db.acting(None) as conn:
            row = await streams.for_key(conn, key)
        if row is None:
            return None
        sid, owner = row["id"], row["user_id"]
        status = row["status"]
        if status == StreamStatus.ENDED:
            async with self._db.acting(owner) as conn:
                await activity.add_event(conn, sid, "ingest_refused", {"reason": "stream_ended"})
            return None
        if status == StreamStatus.CREATED:
            status = await self._start_stream(sid, owner)
        if status != StreamStatus.LIVE:
            return None
        self._owners[str(sid)] = owner
        return str(sid)

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

    async def _start_stream(self, sid: UUID, owner: UUID) -> str:
        """created -> live through the stream's actor; the status it is in afterwards."""
        handle = stream_actor.get_or_create(sid, owner, self.settings)
        try:
            await handle.start.remote()
            return StreamStatus.LIVE
        except RayTaskError as exc:
            if not isinstance(exc.cause, Conflict):
                raise
        async with self._db.acting(owner) as conn:  # raced with the owner's own start
            row = await streams.get(conn, sid)
        return row["status"] if row else StreamStatus.ENDED

    # --- one publish ----------------------------------------------------------------

    async def _open_pipeline(self, sid: str) -> StreamPipeline:
        owner = self._owners[sid]
        async with self._db.acting(owner) as conn:
            stream = await streams.get(conn, UUID(sid))
        assert stream is not None, "authorize found it a moment ago"

        async def end_stream(reason: str) -> None:
            await self._end_stream(sid, reason)

        pipeline = StreamPipeline(
            stream,
            self.settings,
            self._db,
            self._pool.run,
            executor=self._executor,
            end_stream=end_stream,
            on_stop=lambda: self._close_input(sid),
        )
        await pipeline.open()
        self._pipelines[sid] = pipeline
        return pipeline

    async def _run_session(
        self, pipeline: StreamPipeline, session: IngestSession, reader: Any
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
        if pipeline.stopped:
            self._forget_pipeline(sid, pipeline)
        elif sid not in self._sessions and sid not in self._grace:
            self._grace[sid] = asyncio.create_task(self._grace_period(sid, pipeline))

    async def _grace_period(self, sid: str, pipeline: StreamPipeline) -> None:
        """End the stream if no publisher comes back in time (after publishing what the
        last one sent). A reconnect cancels this task."""
        try:
            await asyncio.sleep(self.settings.reconnect_grace_s)
            await pipeline.drain()
        except asyncio.CancelledError:
            return
        if self._grace.get(sid) is not asyncio.current_task():
            return
        del self._grace[sid]
        log.info(
            "stream %s: no publisher for %.0f s; ending it", sid, self.settings.reconnect_grace_s
        )
        await self._end_stream(sid, "publisher_timeout")
        self._forget_pipeline(sid, pipeline)

    async def _end_stream(self, sid: str, reason: str) -> None:
        """End the stream through its actor (as the API does), then stop that actor."""
        owner = self._owners.get(sid)
        if owner is None:
            return
        async with self._db.acting(owner) as conn:
            row = await streams.get(conn, UUID(sid))
        if row is None or row["status"] != StreamStatus.LIVE:  # e.g. its owner ended it meanwhile
            self._close_input(sid)
            return
        handle = stream_actor.get_or_create(UUID(sid), owner, self.settings)
        try:
            await handle.end.remote(reason)
        except RayTaskError as exc:
            if not isinstance(exc.cause, Conflict):  # already ended: fine
                raise
        stream_actor.stop(handle)
        self._close_input(sid)

    def _close_input(self, sid: str) -> None:
        """Stop reading a stream's publisher (the stream is over). The publisher stays
        connected until it leaves: the RTMP server has no way to hang up on it."""
        reader = self._readers.get(sid)
        if reader is not None:
            reader.close()

    def _forget_pipeline(self, sid: str, pipeline: StreamPipeline) -> None:
        if self._pipelines.get(sid) is pipeline:
            del self._pipelines[sid]
        self._spawn(pipeline.close())

    async def _event(self, sid: str, owner: UUID, kind: str, data: dict[str, Any]) -> None:
        try:
            async with self._db.acting(owner) as conn:
                await activity.add_event(conn, UUID(sid), kind, data)
        except Exception:  # noqa: BLE001 - an event must not stop the media
            log.exception("stream %s: recording %s failed", sid, kind)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class IngestActor(IngestService):
    """IngestService as a Ray actor (see module docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Ray runs an async actor's __init__ on its event loop: listen right away, so an
        # actor that Ray restarted serves again without anyone asking.
        self._boot = asyncio.get_running_loop().create_task(self.start())

    async def ready(self) -> int:
        """The bound RTMP port, once listening (raises if it could not listen)."""
        return await asyncio.shield(self._boot)


def start(settings: Settings, timeout_s: float = 60.0) -> ActorHandle:
    """The ingest actor, created if needed, once it listens. Pinned (softly) to this
    node: publishers are pointed at this machine's RTMP port."""
    node = ray.get_runtime_context().get_node_id()
    handle = IngestActor.options(
        name=NAME,
        namespace=stream_actor.NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
    ).remote(settings)
    ray.get(handle.ready.remote(), timeout=timeout_s)
    return handle


def lookup() -> ActorHandle | None:
    try:
        return ray.get_actor(NAME, namespace=stream_actor.NAMESPACE)
    except ValueError:
        return None


def stop(handle: ActorHandle, timeout_s: float = 30.0) -> None:
    """Stop listening, finish the pipelines, and remove the actor for good."""
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)
