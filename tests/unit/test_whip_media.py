"""WHIP's media side without Ray: a real aiortc browser stand-in publishes a synthetic
camera and microphone to `WhipPublish` over loopback (ICE, DTLS, SRTP, the codecs all
real), and the segmenter the pipeline runs cuts the re-encoded FLV into segments that
PyAV decodes."""

from __future__ import annotations

import asyncio
import fractions
import io
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from media.rtmp import FlvReader, IngestSession, flv
from media.segmenter import Segmenter, SourceSegment
from media.webrtc import (
    InvalidOfferError,
    MediaEncoder,
    WhipConfig,
    WhipPublish,
    check_offer,
    use_host_addresses,
)
from media.webrtc.avc import avc_frame_body, avcc_record, split_annexb
from media.webrtc.clock import TrackClock
from media.webrtc.frames import AudioEncoder, VideoEncoder
from media.webrtc.pending import PendingFrames
from tests.utils.webrtc import Camera

SIZE = (320, 240)
SEGMENT_S = 1.0
PUBLISH_S = 3.6


class Microphone(AudioStreamTrack):
    """A 440 Hz tone in 20 ms frames (what a browser's Opus encoder takes)."""

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced silence, 48 kHz mono s16
        t = (frame.pts + np.arange(frame.samples)) / frame.sample_rate
        tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        out = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
        return out


async def offer(pc: RTCPeerConnection, *, audio: bool = True, video_codec: str = "") -> str:
    """A browser's offer; `video_codec` (e.g. "video/VP8"): the only one it offers."""
    camera = pc.addTransceiver(Camera(SIZE), direction="sendonly")
    if video_codec:
        capabilities = RTCRtpSender.getCapabilities("video")
        assert capabilities is not None
        camera.setCodecPreferences([c for c in capabilities.codecs if c.mimeType == video_codec])
    if audio:
        pc.addTransceiver(Microphone(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


def cut(reader: FlvReader) -> list[SourceSegment]:
    """What the stream pipeline does with an ingest's reader, in a worker thread."""
    return list(Segmenter(reader, format="flv", target_duration=SEGMENT_S))


def decode(segment: SourceSegment) -> tuple[list[tuple[int, int]], int]:
    """The decoded pictures' sizes and the number of decoded audio frames."""
    sizes, audio = [], 0
    with av.open(io.BytesIO(segment.data), format="mpegts") as ts:
        for frame in ts.decode(*ts.streams.video, *ts.streams.audio):
            if isinstance(frame, av.VideoFrame):
                sizes.append((frame.width, frame.height))
            else:
                audio += 1
    return sizes, audio


@pytest.fixture(autouse=True)
def loopback() -> None:
    use_host_addresses(["127.0.0.1"])  # aioice leaves loopback out on its own


@pytest.mark.parametrize("sent_codec", ["", "video/VP8"])
async def test_a_browser_publish_becomes_segments_that_decode(sent_codec: str) -> None:
    """H.264 when the browser offers it (the answer prefers it), else what it sends
    (VP8 here): either way the segments are H.264 from the server's encoder."""
    session = IngestSession(stream_id="s1", stream_key="", app="whip", peer="test")
    reader = session.reader()  # opened before media, as the ingest's on_session does
    cutting = asyncio.create_task(asyncio.to_thread(cut, reader))
    publish = WhipPublish(
        session, WhipConfig(keyframe_interval_s=SEGMENT_S, x264_preset="ultrafast")
    )
    browser = RTCPeerConnection()
    answer = await publish.answer(await offer(browser, video_codec=sent_codec))
    await browser.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    assert publish.video_codec == (sent_codec or "video/H264")  # H.264 first in the answer
    [camera] = [t.sender.track for t in browser.getTransceivers() if t.kind == "video"]
    await asyncio.sleep(PUBLISH_S)
    received = publish.status()["frames"]

    await browser.close()  # the browser leaves: the publish notices and ends
    async with asyncio.timeout(30):
        await publish.wait_closed()
    assert session.end_reason == "disconnected"
    async with asyncio.timeout(60):
        segments = await cutting

    assert isinstance(camera, Camera)
    assert received >= PUBLISH_S * 30 * 0.5  # loopback loses little; a busy CI box lags
    assert camera.sent - 10 <= publish.status()["frames"] <= camera.sent
    assert len(segments) >= 3
    # The camera's nominal rate (onMetaData), not the FLV demuxer's guess of 1000.
    assert {s.fps for s in segments} == {30.0}
    for segment in segments[:-1]:  # a keyframe every SEGMENT_S: segments of that length
        assert segment.duration == pytest.approx(SEGMENT_S, abs=0.1)
        assert segment.keyframe_count == 1 and segment.has_audio
    total_video, total_audio = 0, 0
    for segment in segments:
        assert (segment.video_codec, segment.width, segment.height) == ("h264", *SIZE)
        sizes, audio = decode(segment)
        assert sizes and set(sizes) == {SIZE} and len(sizes) == segment.frames
        total_video, total_audio = total_video + len(sizes), total_audio + audio
    # Every encoded picture is in a segment, and the audio spans the video (AAC: 1024
    # samples a frame at 48 kHz).
    assert abs(total_video - publish.status()["frames"]) <= 2
    video_s = total_video / 30
    assert total_audio * 1024 / 48_000 == pytest.approx(video_s, abs=0.6)


async def test_a_video_only_offer_publishes_video() -> None:
    session = IngestSession(stream_id="s2", stream_key="", app="whip", peer="test")
    reader = session.reader()
    cutting = asyncio.create_task(asyncio.to_thread(cut, reader))
    publish = WhipPublish(
        session, WhipConfig(keyframe_interval_s=SEGMENT_S, x264_preset="ultrafast")
    )
    browser = RTCPeerConnection()
    answer = await publish.answer(await offer(browser, audio=False))
    await browser.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.sleep(2.5)
    await publish.close("unpublished")  # the owner's DELETE
    await browser.close()
    assert session.end_reason == "unpublished"
    async with asyncio.timeout(60):
        segments = await cutting
    assert segments and not any(s.has_audio for s in segments)
    assert sum(s.frames for s in segments) == publish.status()["frames"] > 30


SLOW_ENCODE_S = 0.1  # a loaded CPU: 10 pictures a second, a third of the camera's rate
SLOW_PUBLISH_S = 4.0


async def test_an_encoder_slower_than_the_camera_drops_pictures_not_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loaded machine (CI's, in the browser-camera test): each picture's x264 encode
    takes SLOW_ENCODE_S. The publish encodes the newest picture and drops those it has
    no time for, so the FLV keeps the camera's clock: no hole in the video (before,
    a backlog grew until the track's clock jumped 2 s ahead, and a player stopped at
    the hole) and every bit of sound (it was starved behind the video)."""
    real = VideoEncoder.encode

    def slow(self: VideoEncoder, frame: av.VideoFrame, at_ms: int) -> list[Any]:
        time.sleep(SLOW_ENCODE_S)
        return real(self, frame, at_ms)

    monkeypatch.setattr(VideoEncoder, "encode", slow)
    session = IngestSession(stream_id="s5", stream_key="", app="whip", peer="test")
    tags: list[tuple[int, int]] = []
    feed = session.feed_media

    def record(kind: int, timestamp: int, body: bytes) -> None:
        tags.append((kind, timestamp))
        feed(kind, timestamp, body)

    monkeypatch.setattr(session, "feed_media", record)
    publish = WhipPublish(session, WhipConfig(keyframe_interval_s=1.0, x264_preset="ultrafast"))
    browser = RTCPeerConnection()
    answer = await publish.answer(await offer(browser))
    await browser.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    [camera] = [t.sender.track for t in browser.getTransceivers() if t.kind == "video"]
    await asyncio.sleep(SLOW_PUBLISH_S)
    await browser.close()
    async with asyncio.timeout(30):
        await publish.wait_closed()

    video = [ts for kind, ts in tags if kind == flv.VIDEO][1:]  # after the avcC
    audio = [ts for kind, ts in tags if kind == flv.AUDIO][1:]
    assert len(video) >= 0.5 * SLOW_PUBLISH_S / SLOW_ENCODE_S
    gaps = [b - a for a, b in zip(video, video[1:], strict=False)]
    assert max(gaps) < 4 * SLOW_ENCODE_S * 1000, gaps  # never a 2 s jump
    # AAC: 1024 samples a tag at 48 kHz, as many as the time the audio spans.
    span_s = (audio[-1] - audio[0]) / 1000
    assert len(audio) * 1024 / 48_000 == pytest.approx(span_s, abs=0.3)
    assert span_s > SLOW_PUBLISH_S - 1.5
    status = publish.status()
    assert isinstance(camera, Camera) and status["dropped_frames"] > camera.sent / 3
    assert status["frames"] + status["dropped_frames"] >= camera.sent - 10


def test_pending_frames_keep_the_newest() -> None:
    async def run() -> None:
        waiting: PendingFrames[int] = PendingFrames(2)
        for i in range(5):
            waiting.put(i)
        assert waiting.dropped == 3 and len(waiting) == 2
        waiting.close()
        assert [await waiting.get(), await waiting.get(), await waiting.get()] == [3, 4, None]

    asyncio.run(run())


async def test_a_publish_that_never_connects_times_out() -> None:
    session = IngestSession(stream_id="s3", stream_key="", app="whip", peer="test")
    publish = WhipPublish(session, WhipConfig(connect_timeout_s=1.0))
    browser = RTCPeerConnection()
    await publish.answer(await offer(browser))  # the answer never reaches the browser
    began = time.monotonic()
    async with asyncio.timeout(15):
        await publish.wait_closed()
    assert session.end_reason == "connect_timeout" and time.monotonic() - began < 10
    await browser.close()


async def test_offers_that_cannot_be_answered_are_refused() -> None:
    good = await offer(RTCPeerConnection())
    assert check_offer(good).has_audio
    video_only = await offer(RTCPeerConnection(), audio=False)
    assert not check_offer(video_only).has_audio
    no_video = good.split("m=video")[0] + "m=audio" + good.split("m=audio")[1]
    receiving = good.replace("a=sendonly", "a=recvonly")
    only_vp9 = video_only.replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000")
    no_ice = "\r\n".join(x for x in good.split("\r\n") if not x.startswith("a=ice-pwd"))
    for bad in ("hello", "", "v=0\r\n", no_video, receiving, only_vp9, no_ice):
        with pytest.raises(InvalidOfferError):
            check_offer(bad)
    session = IngestSession(stream_id="s4", stream_key="", app="whip", peer="test")
    with pytest.raises(InvalidOfferError):
        await WhipPublish(session, WhipConfig()).answer(receiving)


def test_encoded_frames_are_flv_h264_with_keyframes_every_interval() -> None:
    encoder = MediaEncoder(0.0, keyframe_interval_s=0.5, preset="ultrafast")
    tags = []
    for i in range(40):  # 40 frames at 25 fps, pts in the RTP clock, arriving on time
        frame = av.VideoFrame.from_ndarray(np.full((120, 161, 3), i, np.uint8), format="rgb24")
        frame.pts, frame.time_base = i * 3600, fractions.Fraction(1, 90_000)
        tags += encoder.video(frame, arrived=i * 0.04)
    config, *pictures = tags
    assert flv.is_video_sequence_header(config.body) and config.body[5] == 1  # avcC v1
    assert [t.timestamp for t in pictures] == [40 * i for i in range(40)]
    keys = [t.timestamp for t in pictures if flv.is_keyframe(t.body)]
    assert keys == [0, 520, 1040, 1560]  # the first frame at or after each 500 ms
    assert encoder.video_encoder.size == (160, 120)  # even width
    assert all(flv.is_video_frame(t.body) for t in pictures)


def test_late_frames_keep_the_senders_clock() -> None:
    """Frames that reach the encoder later and later (this process fell behind) keep
    their RTP spacing: no jump ahead, which would be a hole. A jump of the sender's
    own clock (a timestamp read as a wrap: 2**32 ticks) is re-anchored at arrival."""
    clock = TrackClock(0.0, strictly_increasing=True)
    tb = fractions.Fraction(1, 90_000)
    times = [clock.at(i * 3000, tb, arrived=i / 30 * 1.5) for i in range(300)]  # 5 s late
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {33, 34}
    jumped = clock.at(2**32 + 300 * 3000, tb, arrived=15.0)
    assert jumped == 15_000


def test_a_hole_in_the_sound_is_filled_with_silence() -> None:
    """Sound lost for a second (a loaded ingest drops audio packets): the AAC goes on
    through the hole, timed where the sound came back, so a player has no hole."""
    encoder = AudioEncoder()
    tags = []
    for ms in [*range(0, 1000, 20), *range(2000, 3000, 20)]:
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48_000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        tags += encoder.encode(frame, ms)
    times = [t.timestamp for t in tags[1:]]  # after the AudioSpecificConfig
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 22
    assert times[-1] == pytest.approx(3000, abs=120)  # where the sound came back, on time


def test_annexb_to_avcc() -> None:
    sps, pps, idr = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80", b"\x65\x88\x84\x00\x21"
    extradata = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps
    assert split_annexb(extradata + b"\x00\x00\x01" + idr) == [sps, pps, idr]
    record = avcc_record(extradata)
    assert record[:6] == bytes((1, 0x64, 0x00, 0x1F, 0xFF, 0xE1))
    assert record[6:8] == len(sps).to_bytes(2, "big") and record[8 : 8 + len(sps)] == sps
    body = avc_frame_body(b"\x00\x00\x00\x01" + idr, keyframe=True)
    assert body == bytes((0x17, 1, 0, 0, 0)) + len(idr).to_bytes(4, "big") + idr
    with pytest.raises(ValueError):
        avcc_record(b"\x00\x00\x01" + idr)
