"""End to end without Ray: a published stream through Segmenter, SegmentTranscoder,
LocalStorage and the playlists, played back by FFmpeg's HLS demuxer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from media.ladder import build_ladder
from media.playlist import LivePlaylist, SegmentRecord, master_playlist, segment_name
from media.storage import LocalStorage
from media.transcode import EncoderSettings, SegmentTranscoder
from tests.utils.media import CLIP_FRAMES, clip_segments

pytestmark = pytest.mark.slow


def test_the_whole_clip_plays_back_from_the_master_playlist(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "media")
    segments = clip_segments()
    first = segments[0]
    renditions, _ = build_ladder(first.width, first.height, "1080p", False, fps=first.fps)
    # superfast still makes B-frames (dts before pts), at half veryfast's CPU.
    transcoder = SegmentTranscoder(EncoderSettings(preset="superfast", threads=1))
    playlists = {r.name: LivePlaylist(window=None) for r in renditions}
    codecs: dict[str, str] = {}
    started = datetime(2025, 1, 1, tzinfo=UTC)
    for source in segments:
        out = transcoder.transcode(source.data, renditions, expected_frames=source.frames)
        for name, seg in out.items():
            key = f"live/{name}/{segment_name(source.sequence)}"
            store.put(key, seg.data)
            codecs.setdefault(name, seg.codecs)
            playlists[name].append(
                SegmentRecord(
                    sequence=source.sequence,
                    uri=segment_name(source.sequence),
                    duration=seg.duration,
                    size=seg.size,
                    program_date_time=started
                    + timedelta(seconds=seg.start_pts_seconds - first.start_pts_seconds),
                    discontinuity=source.discontinuity,
                )
            )
    for name, playlist in playlists.items():
        playlist.end()
        store.put(f"live/{name}/index.m3u8", playlist.render().encode())
    store.put("live/master.m3u8", master_playlist(renditions, codecs=codecs).encode())

    frames: dict[tuple[int, int], list[int]] = defaultdict(list)
    audio_streams = 0
    with av.open(str(store.path("live/master.m3u8"))) as hls:
        audio_streams = len(hls.streams.audio)
        for packet in hls.demux(hls.streams.video):
            for frame in packet.decode():
                assert frame.pts is not None
                frames[(frame.width, frame.height)].append(frame.pts)

    assert set(frames) == {(r.width, r.height) for r in renditions}
    assert audio_streams == len(renditions)
    step = 90_000 // 25
    for size, pts in frames.items():
        assert len(pts) == CLIP_FRAMES, size
        # Seamless across segment boundaries: one frame duration between all frames.
        assert {b - a for a, b in zip(pts, pts[1:], strict=False)} == {step}, size
