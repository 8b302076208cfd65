"""Which WHEP offers the ingest answers, by the source's video codec, without Ray or
Postgres: `WhepEgress` over in-memory seams (the pipeline is the seam the egress
taps), fed by a real segmenter over real FLV. An HEVC source plays from the streaming
encoder's rung where the stream has one, and is refused (409 `whep_unavailable`)
where it has none; H.264 is answered either way."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from actors.whep_egress import WhepEgress
from lumalive.errors import BadRequest, Conflict
from lumalive.settings import Settings
from media.segmenter import Segmenter
from media.webrtc import use_host_addresses
from tests.utils.media import ChunkedReader, synthetic

SID = "stream-1"


class LiveEncoder:
    """The streaming encoder's seam: WHEP reads `failed` and sets `part_tap`."""

    failed = False
    part_tap: Any = None


class Pipeline:
    """A StreamPipeline's seam: `packet_tap` (set by the egress) sees every packet a
    real segmenter cuts of `flv`, once the egress installed it (a publisher in flight)."""

    def __init__(self, flv: bytes, live: LiveEncoder | None) -> None:
        self.stopped = False
        self.packet_tap: Any = None
        self.live_encoder = live
        self._thread = threading.Thread(target=self._feed, args=(flv,), daemon=True)
        self._thread.start()

    def _feed(self, flv: bytes) -> None:
        deadline = time.monotonic() + 10
        while self.packet_tap is None and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in Segmenter(ChunkedReader(flv), format="flv", on_packet=self._tap):
            pass

    def _tap(self, packet: Any) -> None:
        if (tap := self.packet_tap) is not None:
            tap(packet)

    def status(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        self.stopped = True


class Egress(WhepEgress):
    """The ingest actor's WHEP part over in-memory seams (nothing else is called)."""

    def __init__(self) -> None:
        self.settings = Settings()
        super().__init__(None, None, None, reconnect_grace_s=1.0)

    def publishing(self, flv: bytes, live: LiveEncoder | None) -> None:
        self._pipelines[SID] = Pipeline(flv, live)  # type: ignore[assignment]


HEVC = synthetic(frames=10, gop=10, size=(320, 180), fps=10, codec="libx265", audio=False)
H264 = synthetic(frames=10, gop=10, size=(320, 180), fps=10, audio=False)


@pytest.fixture
async def egress() -> Any:
    service = Egress()
    yield service
    await service.stop()


async def test_hevc_without_an_ll_rung_is_refused_with_a_reason(egress: Egress) -> None:
    egress.publishing(HEVC, live=None)  # latency mode normal
    with pytest.raises(Conflict) as refused:
        await egress.whep_play(SID, "fan", "an offer")
    assert refused.value.code == "whep_unavailable"
    assert "HEVC" in str(refused.value) and "HLS" in str(refused.value)
    whep = egress.status()["whep"][SID]
    assert whep["video_codec"] == "hevc" and whep["viewers"] == []  # nobody admitted


@pytest.mark.parametrize(("flv", "live"), [(HEVC, True), (H264, False)], ids=["hevc-ll", "h264"])
async def test_a_source_with_video_to_send_goes_on_to_the_offer(
    egress: Egress, flv: bytes, live: bool
) -> None:
    encoder = LiveEncoder() if live else None
    egress.publishing(flv, encoder)
    with pytest.raises(BadRequest) as bad:  # past the codec check: the offer itself
        await egress.whep_play(SID, "fan", "hello")
    assert bad.value.code == "invalid_offer"
    if encoder is not None:  # the rung feeds the viewers' video
        assert encoder.part_tap is egress._hubs[SID].rung


async def test_viewers_are_hung_up_when_the_rung_of_an_hevc_source_stops(egress: Egress) -> None:
    use_host_addresses(["127.0.0.1"])
    encoder = LiveEncoder()
    egress.publishing(HEVC, encoder)
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    try:
        answer = await egress.whep_play(SID, "fan", viewer.localDescription.sdp)
        playback = egress._viewers[answer.resource].playback
        encoder.failed = True  # "LL-HLS encoder failed": no H.264 left to send
        async with asyncio.timeout(5):  # the hub's watcher looks every second
            await playback.wait_closed()
        assert playback.reason == "video_unavailable"
        with pytest.raises(Conflict, match="HEVC"):  # and new offers are refused
            await egress.whep_play(SID, "fan", viewer.localDescription.sdp)
    finally:
        await viewer.close()
