"""Every tier encoded for real (PyAV, x264 ultrafast, tiny synthetic sources): a 1080p
ladder, a lower stream bitrate, 4K and 8K rungs by AI upscale of a small source, and a
tiled frame (the 20K code path on a scaled-down grid) reassembled from its decoded
tiles and compared with the whole upscaled frame."""

from __future__ import annotations

import asyncio
import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from actors.media_worker import (
    EncodedRendition,
    SegmentJob,
    SegmentOutcome,
    SegmentResult,
    SegmentWorker,
    init_key,
)
from actors.tile_jobs import run_tiled
from lumalive.settings import Settings
from media.cmaf import first_decode_s
from media.ladder import Rendition
from media.playlist import master_playlist
from media.segmenter import Segmenter, SourceSegment
from media.storage import LocalStorage
from media.tier_plan import plan
from media.tile_renditions import cropping_hook
from media.tiles import Tile, TileGrid


def textured(size: tuple[int, int], frames: int, fps: int) -> bytes:
    """An FLV of random 8x8 blocks, new every frame: content that spends a bitrate."""
    w, h = size
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        vs = out.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "ultrafast", "x264-params": f"keyint={frames}:scenecut=0"},
        )
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            blocks = rng.integers(0, 256, (-(-h // 8), -(-w // 8), 3), dtype=np.uint8)
            img = np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:h, :w])
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return buf.getvalue()


def segment_of(clip: bytes) -> SourceSegment:
    [segment] = list(Segmenter(io.BytesIO(clip), format="flv"))
    return segment


def decoded(data: bytes, fmt: str = "mpegts") -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format=fmt) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def vbv_bound_kbps(r: Rendition, duration: float) -> float:
    """The most the encoder may spend on a segment: the peak rate for its duration plus
    one full VBV buffer (2x the average), as kbit/s."""
    return r.maxrate_kbps + 2 * r.video_kbps / duration


@pytest.fixture(scope="module")
def hd_source() -> SourceSegment:
    return segment_of(textured((1920, 1080), frames=10, fps=5))  # 2 s


@pytest.fixture
def worker(tmp_path: Path) -> SegmentWorker:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", encoder_hardware="off")
    return SegmentWorker(settings, storage=LocalStorage(tmp_path / "media"))


def _encode(
    worker: SegmentWorker,
    source: SourceSegment,
    renditions: tuple[Rendition, ...],
    *,
    enhance: bool = False,
) -> dict[str, EncodedRendition]:
    job = SegmentJob("s", 0, renditions, source.frames, moderation_fps=0, enhance=enhance)
    result = worker.process(job, source.data)
    assert result.error is None
    return {e.name: e for e in result.renditions}


def test_a_1080p_source_gets_a_full_ladder_every_segment_decoding_at_its_size(
    hd_source: SourceSegment, worker: SegmentWorker, tmp_path: Path
) -> None:
    renditions, _ = plan(1920, 1080, "1080p", False, fps=hd_source.fps)
    out = _encode(worker, hd_source, renditions)
    assert [(n, e.width, e.height) for n, e in out.items()] == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    for e in out.values():
        frames = decoded((tmp_path / "media" / e.key).read_bytes())
        assert len(frames) == e.frames == 10
        assert all(f.shape == (e.height, e.width, 3) for f in frames)


def test_a_lower_stream_bitrate_is_what_the_top_rung_gets(
    hd_source: SourceSegment, worker: SegmentWorker
) -> None:
    spent = {}
    for kbps in (8_000, 2_000):
        renditions, _ = plan(1920, 1080, "1080p", False, fps=hd_source.fps, bitrate_kbps=kbps)
        top = renditions[0]
        assert (top.name, top.video_kbps) == ("1080p", kbps)
        e = _encode(worker, hd_source, renditions[:1])["1080p"]
        spent[kbps] = e.size * 8 / e.duration / 1000
        # Noise spends what it is given: at least half the rate, at most the VBV allows.
        assert 0.5 * kbps <= spent[kbps] <= vbv_bound_kbps(top, e.duration)
    assert spent[2_000] < 0.5 * spent[8_000]


@pytest.mark.parametrize(("tier", "frames"), [("4K", 2), ("8K", 1)])
def test_4k_and_8k_rungs_come_from_ai_upscale_of_a_small_source(
    worker: SegmentWorker, tier: str, frames: int
) -> None:
    """The top rung alone, from a 480x270 source: 8K on one frame (the enhancer spends
    ~5 CPU-s on an 8K frame here), 4K on two."""
    source = segment_of(textured((480, 270), frames=frames, fps=2))
    renditions, _ = plan(480, 270, tier, True, fps=source.fps, bitrate_kbps=5_000)
    r = renditions[0]
    size = {"4K": (3840, 2160), "8K": (7680, 4320)}[tier]
    assert (r.name, r.width, r.height, r.upscale_passes) == (tier, *size, 2)
    assert r.needs_upscale and r.video_kbps == 5_000
    e = _encode(worker, source, (r,), enhance=True)[tier]
    assert (e.width, e.height, e.frames) == (*size, frames)
    assert e.codecs.startswith("avc1.")  # read back from the SPS
    level = int(e.codecs.split(".")[1][4:6], 16) / 10
    assert level == float(r.level)  # the level the ladder computed, in the bitstream
    assert e.size * 8 / e.duration / 1000 <= vbv_bound_kbps(r, e.duration)
    master = master_playlist((r,), codecs={tier: e.codecs})
    assert f"RESOLUTION={size[0]}x{size[1]}" in master and f'CODECS="{e.codecs}"' in master


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse)


def test_a_tiled_frame_reassembles_to_the_whole_upscaled_frame(worker: SegmentWorker) -> None:
    """The 20K path on a 1280x720 frame of 5x5 tiles (256x144) from a 320x180 source:
    tiles made as separate jobs, each from its source window, then put back together."""
    from models.enhance import EnhanceConfig, Enhancer

    source = segment_of(textured((320, 180), frames=2, fps=2))
    grid = TileGrid.for_frame(1280, 720, (256, 144))
    tiles = tuple(
        Rendition(
            f"T_r{t.row}c{t.col}",
            t.width,
            t.height,
            400,
            fps=source.fps,
            needs_upscale=True,
            upscale_passes=2,
            tile=t,
        )
        for t in grid.tiles()
    )
    ladder, _ = plan(320, 180, "1080p", False, fps=source.fps)
    job = SegmentJob("s", 0, ladder + tiles, source.frames, moderation_fps=0, enhance=True)
    outcome = asyncio.run(run_tiled(_in_threads(worker), job, source.data))
    assert outcome.result.error is None
    out = {e.name: e for e in outcome.result.renditions}
    assert list(out) == [r.name for r in ladder + tiles]

    frame = np.zeros((2, 720, 1280, 3), np.int32)
    cover = np.zeros((720, 1280), np.int32)
    storage = worker._storage  # the worker's own store: where the tiles went
    for r in tiles:
        t = r.tile
        assert t is not None
        # CMAF (what DASH players take): an init.mp4 and .m4s, on the source's clock.
        key = out[r.name].key
        assert key.endswith(".m4s") and out[r.name].codecs.startswith("avc1.")
        init, media = storage.get(init_key("s", r.name)), storage.get(key)
        assert first_decode_s(init, media[:4096]) == pytest.approx(
            source.start_pts_seconds, abs=0.01
        )
        pictures = decoded(init + media, "mp4")
        assert len(pictures) == 2 and pictures[0].shape == (t.height, t.width, 3)
        frame[:, t.y : t.y + t.height, t.x : t.x + t.width] += np.stack(pictures)
        cover[t.y : t.y + t.height, t.x : t.x + t.width] += 1
    assert (cover == 1).all()

    src = np.stack(decoded(source.data))
    enhancer = Enhancer("cpu")
    whole = enhancer.enhance(src, EnhanceConfig(upscale=True, target_size=(1280, 720)))
    assert _psnr(frame, whole) > 30  # what encoding 25 tiles at 400 kbit/s each loses
    # No seams: before encoding, each tile made from its source window is exactly its
    # region of the whole upscaled frame; after, the pixels along tile edges are close.
    hook = cropping_hook(
        lambda f, r: enhancer.enhance(f, EnhanceConfig(target_size=(r.width, r.height)))
    )
    for r in tiles:
        t = r.tile
        assert t is not None
        made = hook(src, r).astype(np.int32)
        assert np.abs(made - whole[:, t.y : t.y + t.height, t.x : t.x + t.width]).max() <= 1
    edges = np.zeros((720, 1280), bool)
    for t in grid.tiles():
        edges[max(0, t.y - 2) : t.y + 2, :] = True
        edges[:, max(0, t.x - 2) : t.x + 2] = True
    edges[:2, :] = edges[:, :2] = False
    assert _psnr(frame[:, edges], whole[:, edges]) > 25


def _in_threads(worker: SegmentWorker):  # type: ignore[no-untyped-def]
    async def run(job: SegmentJob, data: bytes) -> SegmentOutcome:
        return SegmentOutcome(await asyncio.to_thread(worker.process, job, data))

    return run


def test_a_segment_missing_one_tile_is_an_error_that_names_what_to_delete() -> None:
    grid = TileGrid.for_frame(512, 288, (256, 144))
    tiles = tuple(
        Rendition(f"T{i}", t.width, t.height, 100, tile=t) for i, t in enumerate(grid.tiles())
    )
    ladder = (Rendition("360p", 640, 360, 800),)

    async def run(job: SegmentJob, data: bytes) -> SegmentOutcome:
        [first, *_] = job.renditions
        if first.name == "T2":
            raise RuntimeError("worker kept dying")
        stored = tuple(
            EncodedRendition(r.name, f"k/{r.name}", 1, 2.0, 4, r.width, r.height, "")
            for r in job.renditions
        )
        assert job.moderation_fps == (1.0 if first.tile is None else 0.0)
        return SegmentOutcome(SegmentResult(job.source_sequence, stored), retries=1)

    job = SegmentJob("s", 3, ladder + tiles, 4)
    outcome = asyncio.run(run_tiled(run, job, b""))
    assert outcome.result.error is not None and "T2: RuntimeError" in outcome.result.error
    assert [e.name for e in outcome.result.renditions] == ["360p", "T0", "T1", "T3"]
    assert outcome.retries == 1


def test_tiles_are_cmaf_video_only_beside_a_ladder_that_carries_the_audio() -> None:
    """A tile is one video track in fMP4 (what dash.js and Shaka take), on the source's
    clock; the ladder beside it keeps the stream's audio, once."""
    from media.cmaf import track_timescales
    from media.transcode import EncoderSettings, SegmentTranscoder
    from tests.utils.media import synthetic

    [source] = list(Segmenter(io.BytesIO(synthetic(frames=2, gop=2, size=(128, 72), fps=2))))
    tile = Tile(0, 0, 0, 0, 128, 72, 256, 144)  # the top-left quarter of a 256x144 frame
    tiled = Rendition("T", 128, 72, 200, fps=2, tile=tile)
    ladder = Rendition("72p", 128, 72, 200, fps=2)
    assert tiled.codecs == tiled.video_codec_string and tiled.bandwidth < ladder.bandwidth
    out = SegmentTranscoder(EncoderSettings(preset="ultrafast", threads=1)).transcode(
        source.data, (ladder, tiled), expected_frames=source.frames
    )
    t, lad = out["T"], out["72p"]
    assert t.init is not None and list(track_timescales(t.init)) == [1]
    assert "mp4a" not in t.codecs and lad.codecs.endswith(",mp4a.40.2") and lad.init is None
    assert first_decode_s(t.init, t.data) == pytest.approx(source.start_pts_seconds, abs=0.01)
    assert len(decoded(t.init + t.data, "mp4")) == 2
    with av.open(io.BytesIO(lad.data), format="mpegts") as c:
        assert len(c.streams.audio) == 1
