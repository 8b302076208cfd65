"""The media pipeline's plain building blocks: no Ray here (see STYLE.md rule 2).

    RTMP/FLV bytes -> Segmenter -> SourceSegment (MPEG-TS, keyframe-aligned)
                   -> SegmentTranscoder -> RenditionSegment per ladder rung
                   -> SegmentStorage + playlists (HLS)

`actors/` wraps these in Ray actor pools; everything here is testable without it.
"""

from .ladder import DEFAULT_RUNGS, Ladder, Rendition, Rung, build_ladder
from .playlist import LivePlaylist, SegmentRecord, master_playlist, media_playlist, segment_name
from .segmenter import TIMELINE_ORIGIN_S, InvalidSourceError, Segmenter, SourceSegment
from .storage import LocalStorage, SegmentStorage
from .transcode import (
    CorruptSegmentError,
    EncoderSettings,
    FrameHook,
    RenditionSegment,
    SegmentTranscoder,
    sample_frames,
)

__all__ = [
    "DEFAULT_RUNGS",
    "TIMELINE_ORIGIN_S",
    "CorruptSegmentError",
    "EncoderSettings",
    "FrameHook",
    "InvalidSourceError",
    "Ladder",
    "LivePlaylist",
    "LocalStorage",
    "Rendition",
    "RenditionSegment",
    "Rung",
    "SegmentRecord",
    "SegmentStorage",
    "SegmentTranscoder",
    "Segmenter",
    "SourceSegment",
    "build_ladder",
    "master_playlist",
    "media_playlist",
    "sample_frames",
    "segment_name",
]
