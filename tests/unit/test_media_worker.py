"""The media worker on its own (no Ray): bad segments, missing models, enhancement."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av

from actors.media_worker import SegmentJob, SegmentWorker
from actors.segment_publisher import ladder_for
from lumalive.settings import Settings
from media.storage import LocalStorage
from models.nsfw import NsfwModelMissingError
from tests.utils.media import CLIP


def _clip_segment() -> Any:
    from media.segmenter import Segmenter

    with CLIP.open("rb") as f:
        return next(iter(Segmenter(io.BytesIO(f.read()), format="mp4")))


def test_the_worker_reports_a_truncated_segment_instead_of_failing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", media_max_height=360)
    source = _clip_segment()
    renditions, _ = ladder_for(
        {"quality": "1080p"}, settings, source.width, source.height, source.fps
    )
    worker = SegmentWorker(settings, storage=LocalStorage(tmp_path / "media"))
    job = SegmentJob("s", 0, renditions, source.frames, moderation_fps=0)
    result = worker.process(job, source.data[: len(source.data) // 2 // 188 * 188 + 100])
    assert result.error is not None and "truncated" in result.error
    assert result.renditions == () and not (tmp_path / "media" / "s").exists()


def test_moderation_unavailable_is_reported_not_fatal(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", media_max_height=360)
    source = _clip_segment()
    renditions, _ = ladder_for(
        {"quality": "1080p"}, settings, source.width, source.height, source.fps
    )

    def missing() -> Any:
        raise NsfwModelMissingError("pip install nudenet")

    worker = SegmentWorker(
        settings, storage=LocalStorage(tmp_path / "media"), moderator_factory=missing
    )
    result = worker.process(SegmentJob("s", 0, renditions, source.frames), source.data)
    assert result.error is None and [e.name for e in result.renditions] == ["360p"]
    assert result.moderation is not None and result.moderation.model is None
    assert "nudenet" in (result.moderation.error or "")


def test_enhancement_upscales_through_the_frame_hook(tmp_path: Path) -> None:
    """AI enhancement on: the rendition above the source is made by the super-resolution
    model (and sharpened), frame for frame."""
    from media.segmenter import Segmenter
    from tests.utils.media import synthetic

    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", media_max_height=360)
    # 8 frames: one batch of the model, which takes ~0.3 s a frame on a loaded 2-core CPU.
    clip = synthetic(frames=8, gop=8, size=(320, 180))
    [source] = list(Segmenter(io.BytesIO(clip), format="flv"))
    stream = {"quality": "1080p", "ai_features": {"enhancement": True, "sharpen": True}}
    renditions, _ = ladder_for(stream, settings, source.width, source.height, source.fps)
    assert [(r.name, r.width, r.height, r.needs_upscale) for r in renditions] == [
        ("360p", 640, 360, True)
    ]
    worker = SegmentWorker(settings, storage=LocalStorage(tmp_path / "media"))
    job = SegmentJob(
        "s", 0, renditions, source.frames, moderation_fps=0, enhance=True, sharpen=True
    )
    result = worker.process(job, source.data)
    assert result.error is None
    [out] = result.renditions
    assert (out.width, out.height, out.frames) == (640, 360, 8)
    assert result.timings["enhance"] > 0
    with av.open(str(tmp_path / "media" / out.key)) as played:
        assert sum(1 for _ in played.decode(video=0)) == 8
