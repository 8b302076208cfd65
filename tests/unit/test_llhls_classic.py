"""Encode once (media/llhls/classic): the streaming encoder's own packets, cut where
the segmenter cut, remuxed into the classic MPEG-TS segments of its rungs."""

from __future__ import annotations

import io

import av

from media.llhls.audio import LiveAudio
from media.llhls.classic import ClassicSegment
from media.llhls.encoder import StreamingEncoder
from media.llhls.parts import PartPlan
from tests.unit.test_llhls import FPS, RUNGS, _frames, _source_aac

# The segmenter's cut points (frame numbers): 2 s, then a short 0.4 s one (a
# keyframe after a forced LL segment), then the rest.
CUTS = {0: 7, 50: 8, 60: 9}


def _classic() -> list[ClassicSegment]:
    audio = LiveAudio(48_000, 96)
    enc = StreamingEncoder(
        RUNGS, PartPlan.for_rate(FPS, 2.0), preset="ultrafast", audio=audio, classic=True
    )
    config, source = _source_aac(10.0, 3.3, None)
    out: list[ClassicSegment] = []
    for i, frame in enumerate(_frames(80)):
        t = 10.0 + i / FPS
        while source and source[0].pts / 48_000 <= t:
            audio.push("aac", config, source.pop(0))
        enc.push(frame, t, keyframe=i in CUTS, classic=CUTS.get(i))
        out += enc.take_classic()
    enc.close()
    return out + enc.take_classic()


def test_classic_segments_are_the_segmenters_cuts_as_decodable_ts() -> None:
    segments = _classic()
    by_rung = {r.name: [s for s in segments if s.rendition == r.name] for r in RUNGS}
    for rung in RUNGS:
        got = by_rung[rung.name]
        assert [s.source_sequence for s in got] == [7, 8, 9]
        assert [s.frames for s in got] == [50, 10, 20]
        assert [round(s.start, 3) for s in got] == [10.0, 12.0, 12.4]
        assert abs(got[0].duration - 2.0) < 1e-6 and got[0].codecs.endswith("mp4a.40.2")
        audio_s = 0.0
        for s in got:
            with av.open(io.BytesIO(s.data), format="mpegts") as c:
                assert c.streams.video[0].codec_context.name == "h264"
                frames = list(c.decode(video=0))
            with av.open(io.BytesIO(s.data), format="mpegts") as c:
                audio_s += sum(f.samples for f in c.decode(audio=0)) / 48_000
            # Every segment decodes alone (it starts with an IDR), at the rung's size.
            assert len(frames) == s.frames and frames[0].key_frame
            assert (frames[0].width, frames[0].height) == (rung.width, rung.height)
            assert abs(float(frames[0].pts * frames[0].time_base) - s.start) < 1e-3
        assert 3.0 < audio_s < 3.5  # all of the source's audio, each sample once
