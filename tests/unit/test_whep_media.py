"""WHEP's media side without Ray: the segmenter's tap makes a published FLV
WebRTC-ready (H.264 passed through as Annex B, AAC → Opus; a B-frame source re-encoded
once; an HEVC source's video left to the streaming encoder's lowest rung), and a real
aiortc viewer plays a hub over loopback (ICE, DTLS, SRTP real)."""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from typing import Any

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.ladder import Rendition
from media.llhls.live import LiveTranscoder, SourcePacket
from media.segmenter import Segmenter
from media.tier_plan import plan
from media.webrtc import (
    InvalidOfferError,
    MediaPacket,
    PacketHub,
    SourceTap,
    Subscription,
    WhepConfig,
    WhepPlayback,
    check_play_offer,
    use_host_addresses,
)
from media.webrtc.hub import GopCache, Kind
from media.webrtc.rung import RungVideo
from tests.utils.media import ChunkedReader, frame_index, synthetic

SIZE = (320, 240)


async def tapped(data: bytes, **tap_options: object) -> tuple[list[MediaPacket], SourceTap]:
    """Every packet a viewer subscribed from the start gets of `data` (an FLV publish)."""
    hub = PacketHub(asyncio.get_running_loop())
    viewer = hub.subscribe()
    tap = SourceTap(hub, **tap_options)  # type: ignore[arg-type]
    segmenter = Segmenter(ChunkedReader(data), format="flv", on_packet=tap)
    done = threading.Event()

    def cut() -> None:
        for _ in segmenter:
            pass
        done.set()

    await asyncio.to_thread(cut)
    await asyncio.sleep(0.05)  # deliveries scheduled from the thread
    hub.close()
    packets = []
    for kind in ("video", "audio"):
        while (p := await viewer.get(kind)) is not None:  # type: ignore[arg-type]
            packets.append(p)
    return packets, tap


def decode_video(packets: list[MediaPacket]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for p in packets:
        if p.kind == "video":
            frames += decoder.decode(p.to_av())
    return frames + list(decoder.decode(None))


def decode_audio(packets: list[MediaPacket]) -> int:
    decoder = av.CodecContext.create("libopus", "r")
    return sum(f.samples for p in packets if p.kind == "audio" for f in decoder.decode(p.to_av()))


async def test_the_tap_passes_h264_through_and_makes_opus() -> None:
    packets, tap = await tapped(synthetic(frames=50, gop=25, size=SIZE))
    video = [p for p in packets if p.kind == "video"]
    assert not tap.reencoding and tap.errors == 0
    assert len(video) == 50 and video[0].keyframe and video[0].data.startswith(b"\0\0\0\1")
    assert [p.keyframe for p in video].count(True) == 2
    frames = decode_video(packets)
    assert [(f.width, f.height) for f in frames] == [SIZE] * 50
    assert [frame_index(f) for f in frames] == list(range(50))  # every picture, in order
    samples = decode_audio(packets)
    assert 1.6 * 48_000 < samples <= 2.1 * 48_000  # 2 s of sound as 48 kHz Opus
    audio_pts = [p.pts for p in packets if p.kind == "audio"]
    assert all(b - a == 960 for a, b in zip(audio_pts, audio_pts[1:], strict=False))


async def test_a_b_frame_source_is_reencoded_once_without_b_frames() -> None:
    data = synthetic(frames=50, gop=25, size=SIZE, preset="superfast", x264_params="bframes=2")
    packets, tap = await tapped(data, fallback_height=120)
    assert tap.reencoding
    video = [p for p in packets if p.kind == "video"]
    assert all(b.pts > a.pts for a, b in zip(video, video[1:], strict=False))  # no reordering
    frames = decode_video(packets)
    assert {(f.width, f.height) for f in frames} == {(160, 120)}
    indices = [frame_index(f.reformat(320, 240)) for f in frames]
    assert indices == sorted(indices) and len(frames) >= 40


async def test_an_hevc_source_has_no_video_of_the_taps_own() -> None:
    data = synthetic(frames=20, gop=10, size=(320, 180), fps=10, codec="libx265")
    packets, tap = await tapped(data)
    assert tap.video_codec == "hevc" and tap.needs_rung and not tap.reencoding
    assert not [p for p in packets if p.kind == "video"] and tap.video_skipped == 20
    assert tap.blocked_codec == "hevc"  # its owner refuses viewers: they would get no video
    tap.rung_fed = True
    assert tap.blocked_codec is None  # ... unless the LL rung is the video
    assert decode_audio(packets) > 1.5 * 48_000  # the sound is Opus as for any source


async def test_the_tap_notes_the_codec_while_nobody_watches() -> None:
    hub = PacketHub(asyncio.get_running_loop())
    tap = SourceTap(hub)
    data = synthetic(frames=3, gop=10, size=(320, 180), fps=10, codec="libx265", audio=False)
    await asyncio.to_thread(
        lambda: list(Segmenter(ChunkedReader(data), format="flv", on_packet=tap))
    )
    assert tap.video_codec == "hevc" and tap.video_skipped == 0  # noted, nothing converted


def lowest_rungs(width: int, height: int, fps: float) -> tuple[Rendition, ...]:
    ladder, _ = plan(width, height, "1080p", False, fps=fps)
    return tuple(r for r in ladder if r.codec == "h264" and not r.needs_upscale and not r.tile)


B_FRAMES = {"preset": "superfast", "x264_params": "bframes=2"}
HEVC = {"codec": "libx265"}


@pytest.mark.parametrize("source", [B_FRAMES, HEVC], ids=["h264-b-frames", "hevc"])
async def test_the_lowest_ll_rung_is_the_video_of_a_source_webrtc_cannot_take(
    source: dict[str, str],
) -> None:
    data = synthetic(frames=50, gop=25, size=SIZE, **source)  # type: ignore[arg-type]
    hub = PacketHub(asyncio.get_running_loop())
    viewer = hub.subscribe()
    tap = SourceTap(hub, fallback_height=120)  # its own re-encode would be 160x120
    tap.rung_fed = True
    rung = RungVideo(hub, lambda: tap.rung_fed and tap.needs_rung)
    encoder = LiveTranscoder(lowest_rungs, segment_s=1.0, part_s=0.5, epoch=0)

    def feed(parts: list[Any]) -> None:
        assert encoder.encoder is not None
        rung(encoder.renditions, encoder.encoder.inits, parts)

    def both(packet: Any) -> None:  # the two taps of a StreamPipeline's segmenter
        tap(packet)
        if (copy := SourcePacket.of(packet)) is not None and (parts := encoder.push(copy)):
            feed(parts)

    def cut() -> None:
        for _ in Segmenter(ChunkedReader(data), format="flv", on_packet=both):
            pass
        feed(encoder.close())

    await asyncio.to_thread(cut)
    await asyncio.sleep(0.05)
    hub.close()
    packets = []
    for kind in ("video", "audio"):
        while (p := await viewer.get(kind)) is not None:  # type: ignore[arg-type]
            packets.append(p)
    assert tap.needs_rung and rung.rendition == "240p" and rung.errors == 0
    frames = decode_video(packets)
    assert {(f.width, f.height) for f in frames} == {SIZE}  # the rung's, no re-encode
    indices = [frame_index(f) for f in frames]
    # Every picture the streaming encoder made (48 of the 50 here: its own end of
    # input), in order from the first: no B-frame reordering.
    assert len(frames) == rung.published >= 45
    assert indices == list(range(len(indices)))
    assert decode_audio(packets) > 1.5 * 48_000  # the tap still makes the Opus


def picture(n: int, key: bool = False) -> MediaPacket:
    return MediaPacket("video", bytes([n]), n, Fraction(1, 25), key)


def sound(n: int) -> MediaPacket:
    return MediaPacket("audio", bytes([n]), n * 960, Fraction(1, 48_000))


async def queued(viewer: Subscription, kind: Kind) -> list[int]:
    """The pts of what is waiting in the viewer's queue of `kind`, without waiting."""
    out = []
    while True:
        try:
            packet = await asyncio.wait_for(viewer.get(kind), 0.01)
        except TimeoutError:
            return out
        assert packet is not None
        out.append(packet.pts if kind == "video" else packet.pts // 960)


async def test_a_late_viewer_starts_at_once_from_the_cached_keyframe() -> None:
    hub = PacketHub(asyncio.get_running_loop())
    first = hub.subscribe()
    assert hub.want_keyframe()  # the first viewer has no GOP to start from
    for p in (picture(0, True), sound(0), picture(1), picture(2, True), sound(1), picture(3)):
        hub.publish(p)
    await asyncio.sleep(0)  # the deliveries, on the hub's loop
    late = hub.subscribe()  # nothing published after it: all it gets is the cache
    head = await late.get("video")
    assert head is not None and head.keyframe and head.pts == 2
    assert await queued(late, "video") == [3]
    assert await queued(late, "audio") == [1]  # the sound since that keyframe
    assert not hub.want_keyframe()  # the joiner had a GOP: no producer need hurry
    assert await queued(first, "video") == [0, 1, 2, 3]
    # Once nobody watches, the producers stop: the next viewer does not get a stale GOP.
    hub.unsubscribe(first)
    hub.unsubscribe(late)
    fresh = hub.subscribe()
    assert await queued(fresh, "video") == [] and hub.want_keyframe()


async def test_a_gop_longer_than_the_cache_is_not_replayed() -> None:
    hub = PacketHub(asyncio.get_running_loop())
    hub._gop = GopCache(video=3)
    hub.subscribe()
    for n in range(5):
        hub.publish(picture(n, key=n == 0))
    await asyncio.sleep(0)
    late = hub.subscribe()
    assert hub.want_keyframe()  # it has nothing to start from
    hub.publish(picture(5))
    hub.publish(picture(6, True))
    await asyncio.sleep(0)
    assert await queued(late, "video") == [6]  # from the next keyframe, never before it


def test_offers_a_viewer_cannot_play_are_refused() -> None:
    with pytest.raises(InvalidOfferError):
        check_play_offer("hello")
    with pytest.raises(InvalidOfferError, match="not receiving"):
        check_play_offer(_OFFER.replace("a=recvonly", "a=sendonly"))
    with pytest.raises(InvalidOfferError, match="video/h264"):
        check_play_offer(_OFFER.replace("H264/90000", "VP9/90000"))
    assert check_play_offer(_OFFER).has_audio is False


async def receive(track: MediaStreamTrack, into: list[Any]) -> None:
    try:
        while True:
            into.append(await track.recv())
    except MediaStreamError:
        return


async def test_an_aiortc_viewer_plays_a_hub_over_loopback() -> None:
    use_host_addresses(["127.0.0.1"])
    source, _ = await tapped(synthetic(frames=75, gop=25, size=SIZE))
    hub = PacketHub(asyncio.get_running_loop())
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    frames: list[av.VideoFrame] = []
    sounds: list[av.AudioFrame] = []
    tasks: list[asyncio.Task[None]] = []

    @viewer.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        into: list[Any] = frames if track.kind == "video" else sounds
        tasks.append(asyncio.ensure_future(receive(track, into)))

    await viewer.setLocalDescription(await viewer.createOffer())
    playback = WhepPlayback(hub, WhepConfig(connect_timeout_s=10))
    answer = await playback.answer(viewer.localDescription.sdp)
    await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    async with asyncio.timeout(10):
        while viewer.connectionState != "connected":
            await asyncio.sleep(0.05)
    # Published as a live source does, 25 fps with the audio interleaved; the viewer
    # subscribed before the first keyframe, so it gets every picture.
    for packet in sorted(source, key=lambda p: float(p.pts * p.time_base)):
        hub.publish(packet)
        if packet.kind == "video":
            await asyncio.sleep(0.04)
    await asyncio.sleep(0.5)
    status = playback.status()
    hub.close()  # the stream is over: the playback ends itself
    async with asyncio.timeout(5):
        while not playback.closed:
            await asyncio.sleep(0.05)
    await playback.close("test")
    assert playback.reason == "stream_ended"
    await viewer.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert status["sent"]["video"] == 75
    assert len(frames) >= 70 and {(f.width, f.height) for f in frames} == {SIZE}
    indices = [frame_index(f) for f in frames]
    assert indices == sorted(indices) and indices[0] == 0
    assert sum(s.samples for s in sounds) > 48_000  # Opus decoded by the viewer


_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n"
    "a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
)
