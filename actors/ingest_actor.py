"""The RTMP ingest as one Ray actor: `IngestService` wired to the cluster.

`ClusterIngest` builds what `IngestService` (the logic, in `actors.ingest_service`)
is given, from `Settings`: Postgres (`PostgresIngestRecords`), the stream actors
(`RayStreamControl`) and a `StreamPipeline` per publishing stream over one shared
`MediaPool` of Ray workers. It listens on `settings.rtmp_host:rtmp_port`.

`IngestActor` is its Ray face: detached, named "ingest" in namespace "lumalive",
`num_cpus=0` (it waits on sockets and Postgres; the pool workers do the CPU work),
restarted by Ray if it dies (it serves again on its own and each stream's pipeline
resumes from Postgres when its publisher reconnects).

`finish(stream_id, drain_s)` is the API's typed call into it: before its owner ends a
stream, what the publisher sent is published (`IngestService.finish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any
from uuid import UUID

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import placement, stream_actor
from actors.backpressure import Backlog
from actors.ingest_ports import EndStream, Finished, KeyedStream, PipelineFactory
from actors.ingest_service import IngestService
from actors.media_pipeline import RunSegment, StreamPipeline
from actors.media_pool import MediaPool
from actors.retention import RetentionSweeper, postgres_expiry
from actors.stream_gateway import StreamGateway
from actors.whep_egress import WhepEgress
from actors.whip_ingest import WhipIngest
from lumalive.db import Database
from lumalive.errors import Conflict
from lumalive.quotas import check_start
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import activity, streams
from media.object_storage import open_storage
from media.rtmp import IngestLimits

__all__ = [
    "ClusterIngest",
    "IngestActor",
    "NAME",
    "PostgresIngestRecords",
    "RayStreamControl",
    "finish",
    "lookup",
    "pipeline_factory",
    "rtmp_limits",
    "start",
    "stop",
]

NAME = "ingest"
# How long `finish` waits for the ingest beyond its drain bound (a Ray round trip, an
# actor that is restarting) before the stream is ended without it.
_FINISH_SLACK_S = 5.0

log = logging.getLogger(__name__)


class PostgresIngestRecords:
    """`IngestRecords` in Postgres: key lookups anonymous (the SECURITY DEFINER
    `stream_for_key`), everything else as the stream's owner."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def stream_for_key(self, key: str) -> KeyedStream | None:
        async with self._db.acting(None) as conn:
            row = await streams.for_key(conn, key)
        return KeyedStream.from_row(row) if row else None

    async def stream(self, stream_id: UUID, owner_id: UUID) -> dict[str, Any] | None:
        async with self._db.acting(owner_id) as conn:
            return await streams.get(conn, stream_id)

    async def add_event(
        self, stream_id: UUID, owner_id: UUID, kind: str, data: dict[str, Any]
    ) -> None:
        async with self._db.acting(owner_id) as conn:
            await activity.add_event(conn, stream_id, kind, data)


class RayStreamControl:
    """`StreamControl` through the streams' actors, by the same `StreamGateway` the API
    uses; an ended stream's actor is stopped (the gateway does it). Starting applies
    the live-stream quota the API's start applies (`lumalive.quotas.check_start`),
    under the owner's lock until the stream is live, so a publish and an API start
    cannot both take the last slot."""

    def __init__(self, settings: Settings, records: PostgresIngestRecords, db: Database) -> None:
        async def status_now(stream_id: UUID, owner_id: UUID) -> str:
            row = await records.stream(stream_id, owner_id)
            return str(row["status"]) if row else StreamStatus.ENDED

        self._settings = settings
        self._db = db
        self._gateway = StreamGateway(settings, status_now)

    async def start(self, stream_id: UUID, owner_id: UUID) -> bool:
        async with self._db.acting(owner_id) as conn:
            await check_start(conn, owner_id, self._settings)
            try:
                await self._gateway.start({"id": stream_id, "user_id": owner_id})
            except Conflict:
                return False
        return True

    async def end(self, stream_id: UUID, owner_id: UUID, reason: str) -> None:
        with contextlib.suppress(Conflict):  # already ended: fine
            await self._gateway.end({"id": stream_id, "user_id": owner_id}, reason)


def pipeline_factory(
    settings: Settings,
    db: Database,
    run: RunSegment,
    executor: Executor,
    backlog: Callable[[], Backlog] | None = None,
) -> PipelineFactory:
    """`StreamPipeline`s that write to `db` and run segments with `run` (the pool), whose
    `backlog` drives their backpressure (None: none)."""

    async def open_pipeline(
        stream: dict[str, Any], *, end_stream: EndStream, on_stop: Callable[[], None]
    ) -> StreamPipeline:
        pipeline = StreamPipeline(
            stream,
            settings,
            db,
            run,
            executor=executor,
            end_stream=end_stream,
            on_stop=on_stop,
            backlog=backlog,
        )
        await pipeline.open()
        return pipeline

    return open_pipeline


def rtmp_limits(settings: Settings) -> IngestLimits:
    """What publishers may do, from the `LUMALIVE_RTMP_*` settings."""
    return IngestLimits(
        max_connections=settings.rtmp_max_connections,
        max_connections_per_ip=settings.rtmp_max_connections_per_ip,
        setup_timeout_s=settings.rtmp_setup_timeout_s,
        idle_timeout_s=settings.rtmp_idle_timeout_s,
        setup_message_bytes=settings.rtmp_setup_message_bytes,
        setup_pending_bytes=settings.rtmp_setup_pending_bytes,
        media_message_bytes=settings.rtmp_media_message_bytes,
        media_pending_bytes=settings.rtmp_media_pending_bytes,
        max_chunk_size=settings.rtmp_max_chunk_size,
        amf0_max_values=settings.rtmp_amf0_max_values,
        amf0_max_depth=settings.rtmp_amf0_max_depth,
        refused_keys_per_ip=settings.rtmp_refused_keys_per_ip,
        refused_keys_window_s=settings.rtmp_refused_keys_window_s,
        refused_keys_block_s=settings.rtmp_refused_keys_block_s,
    )


class ClusterIngest(IngestService):
    """`IngestService` with Postgres, the Ray media pool and the stream actors, from
    `settings`. It owns these and releases them in `stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db = Database(settings, pool_size=4)
        self._pool = MediaPool(settings)
        # Segmenters block on their publisher's bytes: one thread each, for as long
        # as the publish lasts, so not the event loop's small default pool.
        self._executor = ThreadPoolExecutor(max_workers=1024, thread_name_prefix="segmenter")
        records = PostgresIngestRecords(self._db)
        super().__init__(
            records,
            RayStreamControl(settings, records, self._db),
            pipeline_factory(
                settings, self._db, self._pool.run, self._executor, self._pool.backlog
            ),
            reconnect_grace_s=settings.reconnect_grace_s,
            host=settings.rtmp_host,
            port=settings.rtmp_port,
            rtmp_limits=rtmp_limits(settings),
        )

    async def stop(self) -> None:
        """Stop listening and the pipelines, then the worker pool and the database."""
        await super().stop()
        self._pool.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)
        await self._db.dispose()

    def status(self) -> dict[str, Any]:
        """`IngestService.status` and the worker pool's."""
        return {**super().status(), "pool": self._pool.status()}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class IngestActor(WhepEgress, WhipIngest, ClusterIngest):
    """ClusterIngest as a Ray actor (see module docstring), also taking browsers'
    WHIP publishes (`actors.whip_ingest`) and serving WHEP viewers (`actors.whep_egress`)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Ray runs an async actor's __init__ on its event loop: listen right away, so an
        # actor that Ray restarted serves again without anyone asking.
        self._boot = asyncio.get_running_loop().create_task(self.start())
        # One long-lived actor per cluster, with a database pool already: it sweeps
        # expired media (DVR window, VOD lifetime) every `retention_sweep_s`.
        sweeper = RetentionSweeper(
            settings, postgres_expiry(settings, self._db), open_storage(settings.media_store_url)
        )
        self._retention = asyncio.get_running_loop().create_task(sweeper.run())

    async def stop(self) -> None:
        self._retention.cancel()
        await super().stop()

    async def ready(self) -> int:
        """The bound RTMP port, once listening (raises if it could not listen)."""
        return await asyncio.shield(self._boot)


def start(settings: Settings, timeout_s: float = 60.0) -> ActorHandle[Any]:
    """The ingest actor, created if needed, once it listens. Pinned to the edge nodes
    (`settings.edge_resource`), else (softly) to this node: publishers are pointed at
    that machine's RTMP port."""
    where: dict[str, Any] = placement.ingest_options(settings)
    if not where:
        node = ray.get_runtime_context().get_node_id()
        where = {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}
    actor: Any = IngestActor  # a Ray ActorClass; its stubs do not know `.options`
    handle: ActorHandle[Any] = actor.options(
        name=NAME,
        namespace=stream_actor.NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        **where,
    ).remote(settings)
    ray.get(handle.ready.remote(), timeout=timeout_s)
    return handle


def lookup() -> ActorHandle[Any] | None:
    return stream_actor.named(NAME)


async def finish(stream_id: UUID, drain_s: float) -> Finished | None:
    """Before its owner ends a stream: the ingest publishes what the stream's publisher
    sent, for at most `drain_s` (`IngestService.finish`). None: there is no ingest actor
    in this deployment, or it did not answer; the stream then ends as it is."""
    handle = lookup()
    if handle is None:
        return None
    try:
        async with asyncio.timeout(drain_s + _FINISH_SLACK_S):
            finished: Finished = await handle.finish.remote(str(stream_id), drain_s)
    except (RayError, TimeoutError) as e:
        log.warning("stream %s: the ingest could not finish it: %r", stream_id, e)
        return None
    return finished


def stop(handle: ActorHandle[Any], timeout_s: float = 30.0) -> None:
    """Stop listening, finish the pipelines, and remove the actor for good."""
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)
