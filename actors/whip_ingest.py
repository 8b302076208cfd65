"""WHIP publishes in the ingest actor, beside RTMP's: the same admission, the same
`on_session`, so a browser's publish runs the RTMP pipeline and its disconnect,
reconnect-grace and End paths.

`WhipIngest` is a mixin over `IngestService` that the ingest actor class puts first
(`class IngestActor(WhipIngest, ClusterIngest)`); it needs the `settings` attribute
that `ClusterIngest` sets. The API calls it through `actors.whip_gateway`:
`whip_publish` answers an offer, `whip_stop` ends a publish (the WHIP DELETE).

Admission by stream (the API checked that the caller owns it):
- ended: refused (Conflict `stream_not_live`), and `ingest_refused` recorded;
- created: started, under the owner's live-stream quota (RateLimited over it);
- its owner is ending it: refused (Conflict `stream_ending`);
- published already, over RTMP or WHIP: refused (Conflict `already_publishing`);
  and an RTMP publish of a stream that a browser publishes is refused likewise.

Invariants:
- At most one publisher per stream, whatever the protocol: the check and the claim
  are made with no await between them.
- A WHIP publish lasts no longer than its stream's pipeline: once the stream is over
  (ended by its owner, moderation), the peer connection is closed and the browser
  sees it.
- The peer connection lives in this actor's process and event loop; the encoding
  runs in one thread per publish (`media.webrtc.whip`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from actors.ingest_service import IngestService
from lumalive.errors import BadRequest, Conflict, NotFound
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from media.rtmp import IngestSession
from media.webrtc import IceServer, InvalidOfferError, WhipConfig, WhipPublish, use_host_addresses

__all__ = ["WhipAnswer", "WhipIngest", "whip_config"]

log = logging.getLogger(__name__)

# How often a publish checks that its stream's pipeline still runs.
_WATCH_S = 1.0


@dataclass(frozen=True, slots=True)
class WhipAnswer:
    """An answered offer: the WHIP resource's id (its Location) and the SDP answer."""

    resource: str
    sdp: str
    video_codec: str | None


def whip_config(settings: Settings) -> WhipConfig:
    """How this node receives publishes, from the `LUMALIVE_WHIP_*` settings."""
    servers = tuple(
        IceServer(url, settings.whip_turn_username, settings.whip_turn_credential)
        if url.startswith("turn")
        else IceServer(url)
        for url in _split(settings.whip_ice_servers)
    )
    return WhipConfig(
        keyframe_interval_s=settings.segment_seconds,
        x264_preset=settings.x264_preset,
        connect_timeout_s=settings.whip_connect_timeout_s,
        idle_timeout_s=settings.rtmp_idle_timeout_s,
        ice_servers=servers,
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class WhipIngest(IngestService):
    """`IngestService` that also takes WHIP publishes (see module docstring)."""

    settings: Settings  # set by ClusterIngest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._whip: dict[str, WhipPublish] = {}  # the browser publishing each stream
        self._whip_tasks: set[asyncio.Task[None]] = set()
        self._whip_config = whip_config(self.settings)
        use_host_addresses(_split(self.settings.whip_host_addresses))

    async def whip_publish(
        self, stream_id: str, owner_id: UUID, offer: str, peer: str
    ) -> WhipAnswer:
        """Answer a browser's offer to publish the stream (see module docstring)."""
        await self._whip_admit(stream_id, owner_id)
        if self._publishing(stream_id):
            raise Conflict("the stream is already being published", "already_publishing")
        session = IngestSession(stream_id=stream_id, stream_key="", app="whip", peer=peer)
        publish = self._whip[stream_id] = WhipPublish(session, self._whip_config)  # the claim
        try:
            answer = await publish.answer(offer)
            self._owners[stream_id] = owner_id
            await super().on_session(session)  # RTMP's path: its pipeline reads from now on
        except BaseException as e:
            self._whip.pop(stream_id, None)
            await publish.close("rejected")
            if isinstance(e, InvalidOfferError):
                raise BadRequest(str(e), "invalid_offer") from None
            raise
        task = asyncio.create_task(self._whip_watch(stream_id, publish))
        self._whip_tasks.add(task)
        task.add_done_callback(self._whip_tasks.discard)
        log.info("whip %s: stream %s publishing from %s", publish.id, stream_id, peer)
        return WhipAnswer(publish.id, answer, publish.video_codec)

    async def whip_stop(self, stream_id: str, resource: str) -> None:
        """The WHIP DELETE: the publish ends as an RTMP publisher leaving does."""
        publish = self._whip.get(stream_id)
        if publish is None or publish.id != resource or publish.closed:
            raise NotFound("no such WHIP session", "whip_session_not_found")
        await publish.close("unpublished")

    async def on_session(self, session: IngestSession) -> None:
        """An RTMP publish: refused while a browser publishes the same stream."""
        publish = self._whip.get(session.stream_id)
        if publish is not None and not publish.session.closed:
            raise Conflict("a browser is publishing this stream", "already_publishing")
        await super().on_session(session)

    async def stop(self) -> None:
        """Hang up on the browsers first, then what `IngestService.stop` stops."""
        publishes = list(self._whip.values())
        await asyncio.gather(*(p.close("server_stopped") for p in publishes))
        for task in list(self._whip_tasks):
            task.cancel()
        await super().stop()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "whip": {s: p.status() for s, p in self._whip.items()}}

    # --- internals ------------------------------------------------------------------

    async def _whip_admit(self, stream_id: str, owner_id: UUID) -> None:
        row = await self._records.stream(UUID(stream_id), owner_id)
        if row is None:
            raise NotFound("stream not found", "stream_not_found")
        status = StreamStatus(row["status"])
        if status == StreamStatus.ENDED:
            await self._records.add_event(
                UUID(stream_id), owner_id, "ingest_refused", {"reason": "stream_ended"}
            )
        if status == StreamStatus.CREATED:  # publishing starts it, under the quota
            status = await self._start_stream(UUID(stream_id), owner_id)
        if status != StreamStatus.LIVE:
            raise Conflict(f"stream is {status}; it cannot be published", "stream_not_live")
        if stream_id in self._finishing:
            raise Conflict("the stream's owner is ending it", "stream_ending")

    def _publishing(self, stream_id: str) -> bool:
        """A publisher, RTMP or WHIP, is sending to the stream (or being admitted)."""
        publish = self._whip.get(stream_id)
        session = self._sessions.get(stream_id)
        return (
            (publish is not None and not publish.session.closed)
            or stream_id in self._server.sessions
            or (session is not None and not session.closed)
        )

    async def _whip_watch(self, stream_id: str, publish: WhipPublish) -> None:
        """Until the publish ends: close it once its stream's pipeline is gone (the
        stream ended) or stopped (moderation ended it)."""
        try:
            while not publish.session.closed:
                pipeline = self._pipelines.get(stream_id)
                if pipeline is None or pipeline.stopped:
                    await publish.close("stream_ended")
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_WATCH_S):
                        await publish.wait_closed()
        finally:
            if self._whip.get(stream_id) is publish:
                del self._whip[stream_id]
