"""The media pipeline's plain building blocks: no Ray, nothing from `serve_app`,
`actors` or `cluster` (STYLE.md rule 2; `tests/unit/test_layering.py` checks it).

    RTMP/FLV bytes (rtmp/) -> Segmenter -> SourceSegment (MPEG-TS, keyframe-aligned)
                   -> SegmentTranscoder -> RenditionSegment per ladder rung
                   -> SegmentStorage + playlists (HLS)

`actors/` wraps these in Ray actor pools; everything here is testable without it.
Import the submodules themselves (`media.ladder`, `media.transcode`, ...): this
package re-exports nothing, so importing the ladder does not load FFmpeg.
"""
