"""WHEP playback in the ingest actor: the process that reads each stream's publisher
also sends it to WebRTC viewers, straight from the segmenter, before any segment is
cut, encoded or published.

    publisher ─▶ StreamPipeline's Segmenter ─on_packet─▶ SourceTap ─▶ PacketHub ─▶ viewers

`WhepEgress` is a mixin over `IngestService` that the ingest actor class puts first
(`class IngestActor(WhepEgress, WhipIngest, ClusterIngest)`); it needs the `settings`
attribute that `ClusterIngest` sets. The API calls it through `actors.whip_gateway`
(`play`, `end_play`) after checking that the caller may see the stream, as for HLS,
and `ban` after a user is banned from a stream (`serve_app.routes.moderation`).

One hub per stream, made for its first offer: the tap is installed on the stream's
pipeline then (`StreamPipeline.packet_tap`), so a stream nobody watches over WebRTC
pays nothing, and one that is watched converts its media once however many watch.
Where the stream has a streaming encoder (LL-HLS, `actors.live_encoder`), its lowest
rung feeds the hub's video whenever the tap cannot pass the source through (B-frames,
or a codec but H.264: HEVC, AV1): `RungVideo` as the encoder's `part_tap`, so WebRTC
costs no encode of its own; the tap still makes the Opus. Without one (latency mode
`normal`), or once it failed, the tap re-encodes a B-frame H.264 source once per stream
as before, and a source of any other codec has no WebRTC video: its offers are refused
with 409 `whep_unavailable` (its HLS plays it), and viewers already playing are hung up
(`video_unavailable`) rather than left with sound only. Viewers do not change.

Invariants:
- A viewer is admitted only while its stream has a pipeline that is not stopped (a
  publisher, or one expected back within the reconnect grace), whose video it can be
  sent (H.264, or an LL rung; an offer waits up to `_CODEC_WAIT_S` for the source's
  first video packet where that depends on its codec), under
  `whep_max_sessions_per_stream` and `whep_max_sessions_per_caller`; the checks, the
  count and the claim are made with no await between them.
- Once the stream's pipeline is gone or stopped (ended by its owner, the grace ran out,
  moderation), its hub closes and every viewer's connection is closed: at once when
  the API ends the stream (`finish`), within `_WATCH_S` otherwise.
- A user banned from a stream (`whep_ban`) loses their playbacks of it (a viewer is
  its caller: the user id it played as, token or playback token), and for
  `visibility_cache_s` + `_BAN_SLACK_S` their new offers are refused with 403
  `banned_from_stream` here too: an API replica whose access cache still says they
  may watch cannot let them back in.
- A publisher that reconnects within the grace keeps its viewers: the hub moves to the
  new pipeline if there is one, and the tap follows a new encoder's parameter sets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from actors.ingest_ports import Finished
from actors.ingest_service import IngestService
from actors.whip_ingest import whip_config
from lumalive.errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited
from lumalive.settings import Settings
from media.webrtc import InvalidOfferError, PacketHub, SourceTap, WhepConfig, WhepPlayback
from media.webrtc.rung import RungVideo

__all__ = ["WhepAnswer", "WhepEgress"]

log = logging.getLogger(__name__)

_WATCH_S = 1.0  # how often a hub checks that its stream's pipeline still runs
_RETRY_S = 5.0
_BAN_SLACK_S = 5.0  # beyond the API's access cache: a Ray round trip, clocks
# How long an offer waits for the source's video codec, where it decides whether the
# viewer gets video (no LL rung): the next video packet, or at a publish's start its first
# (after the segmenter's probe of about a second of media).
_CODEC_WAIT_S = 5.0
_CODEC_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class WhepAnswer:
    """An answered offer: the WHEP resource's id (its Location) and the SDP answer."""

    resource: str
    sdp: str


@dataclass(slots=True)
class _StreamHub:
    hub: PacketHub
    tap: SourceTap
    pipeline: Any  # the StreamPipeline the tap is installed on
    rung: RungVideo  # its streaming encoder's `part_tap`, if it has one
    watcher: asyncio.Task[None] | None = None
    viewers: dict[str, _Viewer] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Viewer:
    stream_id: str
    caller: str
    playback: WhepPlayback


class WhepEgress(IngestService):
    """`IngestService` that also serves WHEP viewers (see module docstring)."""

    settings: Settings  # set by ClusterIngest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hubs: dict[str, _StreamHub] = {}
        self._viewers: dict[str, _Viewer] = {}  # by resource id
        self._whep_config = WhepConfig(
            connect_timeout_s=self.settings.whip_connect_timeout_s,
            ice_servers=whip_config(self.settings).ice_servers,
        )
        self._whep_tasks: set[asyncio.Task[None]] = set()
        self._whep_bans: dict[tuple[str, str], float] = {}  # (stream, user) → until

    async def whep_ban(self, stream_id: str, user_id: str) -> int:
        """The user was banned from the stream: end their playbacks of it and refuse
        their offers for a while (see module docstring). How many were ended."""
        now = time.monotonic()
        self._whep_bans = {k: t for k, t in self._whep_bans.items() if t > now}
        hold = self.settings.visibility_cache_s + _BAN_SLACK_S
        self._whep_bans[(stream_id, user_id)] = now + hold
        ending = [
            v.playback.close("banned")
            for v in list(self._viewers.values())
            if v.stream_id == stream_id and v.caller == user_id
        ]
        await asyncio.gather(*ending, return_exceptions=True)
        if ending:
            log.info("whep: ended %d playbacks of stream %s: banned", len(ending), stream_id)
        return len(ending)

    async def finish(self, stream_id: str, drain_s: float) -> Finished:
        """The stream is ending: what the next class does, then its viewers hang up."""
        finished = await super().finish(stream_id, drain_s)
        entry = self._hubs.get(stream_id)
        if entry is not None:
            self._drop_hub(entry)
        return finished

    async def whep_play(self, stream_id: str, caller: str, offer: str) -> WhepAnswer:
        """Answer a viewer's offer to play the stream (the API checked it may see it).
        `caller` names whom the per-caller limit counts (a user id, or an address)."""
        await self._video_known(stream_id, self._whep_pipeline(stream_id))
        pipeline = self._whep_pipeline(stream_id)  # again: no await from here to the claim
        if self._whep_bans.get((stream_id, caller), 0.0) > time.monotonic():
            raise _banned()
        entry = self._hub(stream_id, pipeline)
        if (codec := entry.tap.blocked_codec) is not None:
            raise _unavailable(codec)
        self._whep_admit(stream_id, caller)
        playback = WhepPlayback(entry.hub, self._whep_config)
        viewer = _Viewer(stream_id, caller, playback)
        self._viewers[playback.id] = entry.viewers[playback.id] = viewer  # the claim
        try:
            sdp = await playback.answer(offer)
        except BaseException as e:
            self._forget(viewer)
            await playback.close("rejected")
            if playback.reason == "banned":  # banned while its offer was being answered
                raise _banned() from None
            if isinstance(e, InvalidOfferError):
                raise BadRequest(str(e), "invalid_offer") from None
            raise
        if playback.reason == "banned":
            self._forget(viewer)
            raise _banned()
        self._spawn_whep(self._until_closed(viewer))
        log.info("whep %s: playing stream %s for %s", playback.id, stream_id, caller)
        return WhepAnswer(playback.id, sdp)

    async def whep_stop(self, stream_id: str, resource: str) -> None:
        """The WHEP DELETE: end that viewer's playback."""
        viewer = self._viewers.get(resource)
        if viewer is None or viewer.stream_id != stream_id or viewer.playback.closed:
            raise NotFound("no such WHEP session", "whep_session_not_found")
        await viewer.playback.close("stopped")

    async def stop(self) -> None:
        """Hang up on the viewers, then what the next class stops."""
        for entry in list(self._hubs.values()):
            self._drop_hub(entry)
        await asyncio.gather(
            *(v.playback.close("server_stopped") for v in list(self._viewers.values())),
            return_exceptions=True,
        )
        for task in list(self._whep_tasks):
            task.cancel()
        await super().stop()

    def status(self) -> dict[str, Any]:
        whep = {
            sid: {
                "viewers": [v.playback.status() for v in entry.viewers.values()],
                "published": entry.hub.published,
                "video_codec": entry.tap.video_codec,  # the source's
                "reencoding": entry.tap.reencoding and not entry.tap.rung_fed,
                "rung": entry.rung.rendition if entry.tap.rung_fed else None,
                "rung_pictures": entry.rung.published,
                "tap_errors": entry.tap.errors,
            }
            for sid, entry in self._hubs.items()
        }
        return {**super().status(), "whep": whep}

    # --- internals ------------------------------------------------------------------

    def _whep_pipeline(self, stream_id: str) -> Any:
        """The stream's running pipeline (a StreamPipeline); 409 without one."""
        pipeline: Any = self._pipelines.get(stream_id)
        if pipeline is None or pipeline.stopped:
            raise Conflict("the stream is not being published", "stream_not_live")
        return pipeline

    async def _video_known(self, stream_id: str, pipeline: Any) -> None:
        """Where no LL rung feeds the stream's hub, wait (at most `_CODEC_WAIT_S`) until
        its tap has seen the source's video codec, which decides whether a viewer gets
        video. The hub and its tap are made here if need be: the tap notes the codec."""
        tap = self._hub(stream_id, pipeline).tap
        deadline = time.monotonic() + _CODEC_WAIT_S
        while not tap.rung_fed and tap.video_codec is None and time.monotonic() < deadline:
            if pipeline.stopped:
                return
            await asyncio.sleep(_CODEC_POLL_S)

    def _whep_admit(self, stream_id: str, caller: str) -> None:
        live = [v for v in self._viewers.values() if not v.playback.closed]
        if (
            sum(v.stream_id == stream_id for v in live)
            >= self.settings.whep_max_sessions_per_stream
        ):
            raise RateLimited(
                "this stream has as many WebRTC viewers as it takes; play its HLS instead",
                _RETRY_S,
                "whep_stream_full",
            )
        if sum(v.caller == caller for v in live) >= self.settings.whep_max_sessions_per_caller:
            raise RateLimited(
                "too many WebRTC sessions open; end one (DELETE its Location) first",
                _RETRY_S,
                "whep_too_many_sessions",
            )

    def _hub(self, stream_id: str, pipeline: Any) -> _StreamHub:
        entry = self._hubs.get(stream_id)
        if entry is None:
            hub = PacketHub(asyncio.get_running_loop())
            tap = SourceTap(
                hub,
                fallback_height=self.settings.whep_fallback_height,
                keyframe_interval_s=self.settings.segment_seconds,
                preset=self.settings.x264_preset,
            )
            rung = RungVideo(hub, lambda: tap.rung_fed and tap.needs_rung)
            entry = self._hubs[stream_id] = _StreamHub(hub, tap, pipeline, rung)
            self._attach(entry, pipeline)
            entry.watcher = asyncio.create_task(self._watch_hub(stream_id, entry))
        return entry

    async def _watch_hub(self, stream_id: str, entry: _StreamHub) -> None:
        """Follow the stream's pipeline; close the hub once there is none running."""
        while True:
            await asyncio.sleep(_WATCH_S)
            pipeline: Any = self._pipelines.get(stream_id)  # a StreamPipeline: packet_tap
            if pipeline is None or pipeline.stopped:
                self._drop_hub(entry)
                return
            if pipeline is not entry.pipeline:  # a new pipeline for a reconnect
                self._detach(entry)
                self._attach(entry, pipeline)
            live = _live(pipeline)
            # The encoder stopped: the tap re-encodes (B-frames) or there is no video;
            # a reconnect's new encoder session (`LiveEncoder.begin`) feeds it again.
            entry.tap.rung_fed = live is not None and not live.failed
            if entry.viewers and (codec := entry.tap.blocked_codec) is not None:
                self._hang_up_viewers(stream_id, entry, codec)

    def _hang_up_viewers(self, stream_id: str, entry: _StreamHub, codec: str) -> None:
        """Its viewers get no video any more (the encoder stopped, or the codec became
        known after they were admitted): end their playbacks rather than send sound only."""
        for viewer in list(entry.viewers.values()):
            viewer.playback.close("video_unavailable")
        log.warning(
            "whep: stream %s has %s video and no LL rung: viewers hung up", stream_id, codec
        )

    def _attach(self, entry: _StreamHub, pipeline: Any) -> None:
        """Install the tap on `pipeline`, and the rung feed on its streaming encoder."""
        entry.pipeline = pipeline
        pipeline.packet_tap = entry.tap
        live = _live(pipeline)
        entry.tap.rung_fed = live is not None and not live.failed
        if live is not None:
            live.part_tap = entry.rung

    def _detach(self, entry: _StreamHub) -> None:
        entry.pipeline.packet_tap = None
        live = _live(entry.pipeline)
        if live is not None and live.part_tap is entry.rung:
            live.part_tap = None

    def _drop_hub(self, entry: _StreamHub) -> None:
        """The stream is over for WebRTC: uninstall the tap, end every viewer."""
        self._detach(entry)
        entry.hub.close()  # the playbacks see their subscription end and close
        for sid, known in list(self._hubs.items()):
            if known is entry:
                del self._hubs[sid]
        if entry.watcher is not None and entry.watcher is not asyncio.current_task():
            entry.watcher.cancel()

    async def _until_closed(self, viewer: _Viewer) -> None:
        try:
            await viewer.playback.wait_closed()
        finally:
            self._forget(viewer)

    def _forget(self, viewer: _Viewer) -> None:
        resource = viewer.playback.id
        self._viewers.pop(resource, None)
        entry = self._hubs.get(viewer.stream_id)
        if entry is not None:
            entry.viewers.pop(resource, None)

    def _spawn_whep(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._whep_tasks.add(task)
        task.add_done_callback(self._whep_tasks.discard)


def _banned() -> Forbidden:
    return Forbidden("you are banned from this stream", "banned_from_stream")


def _unavailable(codec: str) -> Conflict:
    return Conflict(
        f"this stream's video is {codec.upper()}, which WebRTC playback cannot send as it is,"
        " and the stream has no low-latency H.264 rendition to send instead (latencyMode"
        " normal, or its streaming encoder stopped); play its HLS instead",
        "whep_unavailable",
    )


def _live(pipeline: Any) -> Any:
    """The pipeline's streaming encoder (a `LiveEncoder`), None without LL-HLS."""
    return getattr(pipeline, "live_encoder", None)
