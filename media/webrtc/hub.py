"""One stream's WebRTC-ready media, fanned out to its WHEP viewers.

    producer (any thread) ──publish(MediaPacket)──▶ PacketHub ──(its event loop)──▶
        one Subscription per viewer ──get()──▶ that viewer's aiortc tracks

A producer is whatever makes packets a browser decodes without help: today the
segmenter's tap (`media.webrtc.tap.SourceTap`: the source's H.264 re-framed, its AAC
transcoded to Opus once per stream), and for a source whose video the tap cannot pass
through (B-frames, HEVC, AV1, …) the streaming encoder's lowest rung
(`media.webrtc.rung.RungVideo`: its pictures need no re-encoding either); nothing
downstream changes.

Invariants:
- `publish` may be called from any thread; subscribers get packets on the hub's event
  loop, in the order they were published.
- A subscriber's video starts at a keyframe (whose packet carries SPS/PPS): before
  its first keyframe, and after its queue overflowed (a viewer that cannot keep up),
  its video is dropped until the next keyframe, so its decoder never sees a picture
  whose references it lacks. Audio that overflows drops the oldest packet.
- A late subscriber does not wait for the next keyframe: the hub keeps what was
  delivered since the latest keyframe (`GopCache`: that keyframe, the pictures and
  the sound after it, bounded) and queues it first, so its first packet is a keyframe
  and its picture comes at once. A GOP longer than the bound is not kept (a joiner
  waits for the next keyframe, and `want_keyframe` tells a producer that can make one
  sooner). The cache is emptied when the last subscriber leaves: producers stop
  publishing then, so what it held would be stale by the next join.
- Packets are immutable copies (`MediaPacket`): a producer may reuse its own objects.
- After `close`, every subscription ends (`get` returns None) and publishing is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from av.packet import Packet
from av.stream import Stream

__all__ = ["GopCache", "MediaPacket", "PacketHub", "Subscription"]

Kind = Literal["video", "audio"]

# About 6 s of 30 fps video (3 s at 60) and 5 s of 20 ms Opus frames: a viewer further
# behind than this is not watching live any more; it skips to the next keyframe. They
# leave room for a cached GOP and what arrives while its peer connection comes up.
_VIDEO_QUEUE = 180
_AUDIO_QUEUE = 250
# The most a GOP cache keeps: a 4 s GOP at 30 fps (2 s at 60), with its sound; bytes
# bound a GOP of huge pictures.
_GOP_VIDEO = 120
_GOP_AUDIO = 200
_GOP_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One encoded picture (H.264 Annex B; a keyframe carries SPS/PPS) or one Opus
    frame, at `pts` in `time_base` on the stream's timeline."""

    kind: Kind
    data: bytes
    pts: int
    time_base: Fraction
    keyframe: bool = False

    def to_av(self) -> Packet[Stream]:
        """As aiortc's `pack()` takes it: the bytes, pts and time base."""
        packet: Packet[Stream] = Packet(self.data)
        packet.pts, packet.time_base = self.pts, self.time_base
        return packet


class Subscription:
    """One viewer's queues (see module docstring). Use on the hub's event loop."""

    def __init__(self) -> None:
        self._queues: dict[Kind, deque[MediaPacket]] = {"video": deque(), "audio": deque()}
        self._ready: dict[Kind, asyncio.Event] = {
            "video": asyncio.Event(),
            "audio": asyncio.Event(),
        }
        self._video_synced = False  # a keyframe was queued since the start or an overflow
        self.closed = False
        self.dropped = 0  # packets this viewer never got (waiting for a keyframe, overflow)

    async def get(self, kind: Kind) -> MediaPacket | None:
        """The next packet of `kind`; None once the subscription is closed."""
        queue, ready = self._queues[kind], self._ready[kind]
        while not queue:
            if self.closed:
                return None
            ready.clear()
            await ready.wait()
        return queue.popleft()

    def _put(self, packet: MediaPacket) -> None:
        if packet.kind == "video":
            self._put_video(packet)
        else:
            queue = self._queues["audio"]
            if len(queue) >= _AUDIO_QUEUE:
                queue.popleft()
                self.dropped += 1
            queue.append(packet)
        self._ready[packet.kind].set()

    def _put_video(self, packet: MediaPacket) -> None:
        queue = self._queues["video"]
        if len(queue) >= _VIDEO_QUEUE:  # too far behind: start again at a keyframe
            self.dropped += len(queue)
            queue.clear()
            self._video_synced = False
        if packet.keyframe:
            self._video_synced = True
        if not self._video_synced:
            self.dropped += 1
            return
        queue.append(packet)

    def _close(self) -> None:
        self.closed = True
        for ready in self._ready.values():
            ready.set()


class GopCache:
    """What was delivered since the latest keyframe, in delivery order, within bounds
    (see module docstring); empty before a keyframe and after a GOP outgrew them."""

    def __init__(
        self, video: int = _GOP_VIDEO, audio: int = _GOP_AUDIO, max_bytes: int = _GOP_BYTES
    ) -> None:
        self._bounds = {"video": video, "audio": audio}
        self._max_bytes = max_bytes
        self._packets: list[MediaPacket] = []
        self._counts = {"video": 0, "audio": 0}
        self._bytes = 0

    @property
    def packets(self) -> list[MediaPacket]:
        return list(self._packets)

    def add(self, packet: MediaPacket) -> None:
        if packet.kind == "video" and packet.keyframe:
            self.clear()
        elif not self._packets:  # no keyframe to start from
            return
        self._packets.append(packet)
        self._counts[packet.kind] += 1
        self._bytes += len(packet.data)
        if self._counts[packet.kind] > self._bounds[packet.kind] or self._bytes > self._max_bytes:
            self.clear()  # too long a GOP to replay: joiners wait for the next keyframe

    def clear(self) -> None:
        self._packets.clear()
        self._counts = {"video": 0, "audio": 0}
        self._bytes = 0


class PacketHub:
    """A stream's packets for its viewers (see module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: set[Subscription] = set()
        self._gop = GopCache()
        self._keyframe_wanted = False
        self.closed = False
        self.published = 0

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone watches (a producer may skip work when nobody does); read
        from any thread, so only a hint."""
        return bool(self._subscribers)

    @property
    def viewers(self) -> int:
        return len(self._subscribers)

    def publish(self, packet: MediaPacket) -> None:
        """Hand a packet to every subscriber; any thread."""
        if self.closed or not self._subscribers:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the actor stops
            self._loop.call_soon_threadsafe(self._deliver, packet)

    def subscribe(self) -> Subscription:
        """A new viewer's subscription (on the hub's event loop), the cached GOP queued
        first."""
        subscription = Subscription()
        if self.closed:
            subscription._close()
            return subscription
        self._subscribers.add(subscription)
        cached = self._gop.packets
        for packet in cached:
            subscription._put(packet)
        if not cached:
            self._keyframe_wanted = True
        return subscription

    def want_keyframe(self) -> bool:
        """Whether a subscriber joined with no GOP to start from since the last call: a
        producer that encodes may make its next picture a keyframe. Any thread; a
        hint (a lost one costs that joiner a wait for the next keyframe)."""
        wanted, self._keyframe_wanted = self._keyframe_wanted, False
        return wanted

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        subscription._close()
        if not self._subscribers:
            self._gop.clear()  # producers stop now: it would be stale by the next join

    def close(self) -> None:
        """End every subscription; later packets are dropped."""
        self.closed = True
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)

    def _deliver(self, packet: MediaPacket) -> None:
        if self.closed or not self._subscribers:
            return  # scheduled before the last one left: keep the cache empty
        self.published += 1
        self._gop.add(packet)
        for subscription in self._subscribers:
            subscription._put(packet)
