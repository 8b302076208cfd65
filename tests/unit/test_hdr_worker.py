"""HDR through the real segment path (no Ray): Segmenter -> SegmentWorker with a real
SegmentJob -> storage, then the playlists the HLS route renders from the results."""

from __future__ import annotations

import io
from pathlib import Path

import av

from actors.media_worker import SegmentJob, SegmentWorker, init_key
from lumalive.settings import Settings
from media import cmaf, hdr
from media.ladder import Rendition
from media.playlist import SegmentRecord, master_playlist, media_playlist
from media.segmenter import Segmenter
from media.storage import LocalStorage
from tests.utils.hdr_media import FPS, H, W, hdr_source


def test_an_hdr_stream_is_stored_as_fmp4_and_plays_across_segments(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast")
    # Two GOPs of 4 frames, cut at every keyframe: two segments.
    flv = hdr_source(frames=8, gop=4)
    segments = list(Segmenter(io.BytesIO(flv), format="flv", target_duration=0.3))
    assert len(segments) == 2
    colour = hdr.probe_colour(segments[0].data)
    renditions = hdr.hdr_renditions((Rendition("180p", W, H, 300, fps=FPS),), colour.range)
    storage = LocalStorage(tmp_path / "media")
    worker = SegmentWorker(settings, storage=storage)
    results = [
        worker.process(
            SegmentJob("s", seg.sequence, renditions, seg.frames, moderation_fps=0), seg.data
        )
        for seg in segments
    ]
    assert [r.error for r in results] == [None, None]
    keys = [[e.key for e in r.renditions] for r in results]
    assert keys == [
        ["s/180p/00000000.ts", "s/180p-hdr/00000000.m4s"],
        ["s/180p/00000001.ts", "s/180p-hdr/00000001.m4s"],
    ]
    init = storage.get(init_key("s", "180p-hdr"))
    media = [storage.get(k[1]) for k in keys]
    # One init for the rendition; every media segment's tfdt on the stream timeline.
    times = [cmaf.base_decode_times(m)[0][1] for m in media]
    assert times[1] - times[0] == segments[0].frames * 90_000 // FPS
    with av.open(io.BytesIO(init + b"".join(media))) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == sum(s.frames for s in segments)
    steps = {b.pts - a.pts for a, b in zip(frames, frames[1:], strict=False)}
    assert steps == {90_000 // FPS}  # seamless: one frame duration everywhere
    assert frames[0].color_trc == 16 and frames[-1].color_trc == 16

    # What the HLS route renders from the rows the publisher writes.
    codecs = {e.name: e.codecs for e in results[0].renditions}
    master = master_playlist(renditions, codecs=codecs)
    assert "#EXT-X-VERSION:7" in master
    [sdr_line, hdr_line] = [
        line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")
    ]
    assert "VIDEO-RANGE=SDR" in sdr_line and 'CODECS="avc1.' in sdr_line
    assert "VIDEO-RANGE=PQ" in hdr_line and 'CODECS="hvc1.2.4.L' in hdr_line
    records = [SegmentRecord(i, f"{i:08d}.m4s", 0.4) for i in range(2)]
    playlist = media_playlist(records, map_uri="init.mp4", uri_suffix="?pt=x")
    assert "#EXT-X-VERSION:7" in playlist
    assert '#EXT-X-MAP:URI="init.mp4?pt=x"' in playlist and "00000001.m4s?pt=x" in playlist
    sdr_only = master_playlist(renditions[:1])
    assert "VIDEO-RANGE" not in sdr_only and "#EXT-X-VERSION:3" in sdr_only
