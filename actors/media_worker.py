"""What a media pool worker does with one source segment: moderate, enhance, encode, store.

Plain class, no Ray (the pool in `actors.media_pool` wraps it), so it is testable in
process. Models are loaded on first use, inside the worker process, and only if a
segment needs them (torch only for enhancement, onnxruntime only for moderation).

Invariants:
- `process` never raises for bad media: a segment that cannot be transcoded without
  losing frames comes back as a result with `error` set (the stream goes on). Other
  exceptions are bugs or infrastructure failures and propagate.
- Moderation that cannot run (the optional `nudenet` weights are missing) is reported
  as unavailable in the result, once per segment, and never fails the segment.
- Storage keys are `{stream_id}/{rendition}/{segment_name(source_sequence)}`; a put is
  atomic and idempotent, so a retried segment overwrites its own files harmlessly.
- Bounded memory (`actors.media_memory`, docs/media.md "Memory"): frames are decoded
  and encoded one at a time, the frame hook gets them in batches of at most
  `HOOK_PIXELS` output pixels, and the enhancer (here, or in the enhancer pool when
  the factories say so) works in tiles; the ingest refuses rungs whose estimate
  exceeds what the worker declared to Ray.
- Two `process` calls may run at once, in two threads (the pool's lowest-rung lane,
  `actors.segment_pool`: an upper-rung job and a lowest rung beside it). Nothing of a
  call's PyAV state is shared: each thread has its own transcoders (scalers,
  reformatters, encoders). The models load once, under a lock, and are shared: the
  enhancer runs in `torch.inference_mode` with no state between calls, and only the
  lowest rung's job moderates, so two calls never moderate at once. Storage puts are
  atomic files or object PUTs, safe from two threads.
- While a lowest-rung call moderates and encodes, an upper-rung call beside it waits
  between frames (`actors.worker_lane.LaneYield`, `media_lane_yield`): the lowest rung
  runs as if alone. Only upper-rung calls wait, and only on lowest-rung calls, which
  never wait: no cycle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from actors.media_memory import hook_batch
from actors.placement import worker_cpus
from actors.worker_lane import InFlight, LaneYield
from lumalive.settings import Settings
from media.cmaf import INIT_NAME
from media.ladder import Rendition
from media.object_storage import open_storage
from media.playlist import segment_name
from media.sampling import sample_frames
from media.shared_passes import SharedPassHook
from media.storage import SegmentStorage
from media.tile_renditions import cropping_hook
from media.transcode import (
    CorruptSegmentError,
    EncoderSettings,
    FrameHook,
    RenditionSegment,
    SegmentTranscoder,
)

__all__ = [
    "SegmentJob",
    "EncodedRendition",
    "ModerationResult",
    "SegmentResult",
    "SegmentOutcome",
    "SegmentWorker",
    "MODERATION_MODEL",
    "segment_key",
    "init_key",
]

log = logging.getLogger(__name__)

MODERATION_MODEL = "nudenet-320n"


def segment_key(stream_id: str, rendition: str, source_sequence: int, ext: str = "ts") -> str:
    """`ext`: "ts", or "m4s" for an fMP4 rendition, whose init is `init_key`."""
    return f"{stream_id}/{rendition}/{segment_name(source_sequence, ext)}"


def init_key(stream_id: str, rendition: str) -> str:
    """An fMP4 rendition's init segment: one per rendition (the same bytes from every
    segment: media.cmaf), rewritten harmlessly by each segment."""
    return f"{stream_id}/{rendition}/{INIT_NAME}"


@dataclass(frozen=True, slots=True)
class SegmentJob:
    """One source segment's work order; the bytes travel separately (a Ray object)."""

    stream_id: str
    source_sequence: int
    renditions: tuple[Rendition, ...]
    frames: int  # video packets the segmenter counted: every rendition must have them
    moderation_fps: float = 1.0  # 0: no moderation
    enhance: bool = False  # learned super-resolution for renditions above the source
    denoise: bool = False
    sharpen: bool = False
    submitted_at: float = 0.0  # time.time() when the segment was cut
    # time.time() when the pool handed it to a worker (`actors.segment_pool`): the
    # worker's `timings` split its wait into the pool's queue and the call reaching it.
    dispatched_at: float = 0.0
    # The pool serves it this much later than its age says (`actors.lowest_first`: a
    # segment's upper rungs go after the lowest rungs of the next segments).
    defer_s: float = 0.0
    # Which of its segment's jobs this is (`actors.lowest_first`): a "lowest" job may
    # run in the lane beside an "upper" one (the rungs above the lowest, tiles), and
    # with the reserve "upper" jobs never hold the pool's last worker, which is kept
    # for "lowest" and "whole" ones (`actors.segment_pool`).
    part: Literal["whole", "lowest", "upper"] = "whole"


@dataclass(frozen=True, slots=True)
class EncodedRendition:
    name: str
    key: str  # storage key
    size: int
    duration: float
    frames: int
    width: int
    height: int
    codecs: str


@dataclass(frozen=True, slots=True)
class ModerationResult:
    frames_scored: int
    scores: tuple[float, ...]
    model: str | None  # None: unavailable
    error: str | None = None

    @property
    def max_score(self) -> float | None:
        return max(self.scores) if self.scores else None


@dataclass(frozen=True, slots=True)
class SegmentResult:
    source_sequence: int
    renditions: tuple[EncodedRendition, ...] = ()
    moderation: ModerationResult | None = None
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage
    error: str | None = None  # set: the segment is unusable (corrupt) and was not stored
    worker: str = ""


@dataclass(frozen=True, slots=True)
class SegmentOutcome:
    """A result as the pool delivers it: with the attempts lost to workers that died."""

    result: SegmentResult
    retries: int = 0


class SegmentWorker:
    """Moderation, enhancement and encoding of whole segments, one at a time per thread
    (two threads with a lane: the module docstring).

    `moderator_factory` and `enhancer_factory` build the models on first use; the
    defaults are `models.nsfw.NsfwDetector` and `models.enhance.Enhancer` (on CUDA
    when the worker has a GPU). Passing others is a seam for tests and other models.
    `decode_hwaccel` decodes on a device (`"cuda"`: NVDEC, software fallback).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        storage: SegmentStorage | None = None,
        moderator_factory: Callable[[], Any] | None = None,
        enhancer_factory: Callable[[], Any] | None = None,
        decode_hwaccel: str | None = None,
    ) -> None:
        # The worker writes its own segments to the shared store (no node reads another's disk).
        self._storage = storage if storage is not None else open_storage(settings.media_store_url)
        self._encoder_settings = EncoderSettings(
            preset=settings.x264_preset,
            threads=worker_cpus(settings),  # as many as the worker declares to Ray
            hardware=settings.encoder_hardware,
            decode_hwaccel=decode_hwaccel,  # "cuda": NVDEC, where the worker holds a GPU
        )
        # Per thread (`_transcoder`): one per frame-hook batch size, made on first use.
        self._local = threading.local()
        self._models_lock = threading.Lock()  # two calls must not load a model twice
        self._in_flight = InFlight()
        self._lane = LaneYield(settings.media_lane_yield)
        self._moderator_factory = moderator_factory or _default_moderator
        self._enhancer_factory = enhancer_factory or _default_enhancer
        self._moderator: Any = None
        self._moderator_error: str | None = None
        self._enhancer: Any = None
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def process(self, job: SegmentJob, data: bytes) -> SegmentResult:
        """Moderate, enhance and encode one segment and store every rendition.

        `timings["cpu"]` is this process's CPU time during the call (all its threads:
        x264's and FFmpeg's included, which a per-thread clock would miss). When another
        call ran beside it for any of that time (a lane), it counts that call's CPU too,
        and `timings["cpu_shared"]` is 1: the figure is then an upper bound."""
        with self._in_flight.call() as beside:
            result = self._process(job, data)
        if beside[0]:
            result.timings["cpu_shared"] = 1.0
        return result

    def _process(self, job: SegmentJob, data: bytes) -> SegmentResult:
        started, cpu = time.time(), time.process_time()
        timings = {"queue": _since_ms(job.submitted_at, started)}
        if job.dispatched_at:  # of the queue: from the pool's hand-over to this start
            timings["dispatch"] = _since_ms(job.dispatched_at, started)
        try:
            with self._lane.first(job.part):  # an upper-rung call beside it yields
                moderation, encoded = self._encode(job, data, timings)
        except CorruptSegmentError as e:
            return SegmentResult(
                job.source_sequence,
                timings=timings,
                error=f"corrupt segment: {e}",
                worker=self.name,
            )
        t = time.perf_counter()
        out = [self._store(job, r, encoded[r.name]) for r in job.renditions]  # ladder order
        timings["store"] = _ms(t)
        # This process's CPU for the segment (with another call beside it, for both:
        # `process`): on a shared machine a steadier cost figure than the wall-clock
        # stages above.
        timings["cpu"] = round((time.process_time() - cpu) * 1000, 1)
        return SegmentResult(job.source_sequence, tuple(out), moderation, timings, worker=self.name)

    def _encode(
        self, job: SegmentJob, data: bytes, timings: dict[str, float]
    ) -> tuple[ModerationResult | None, dict[str, RenditionSegment]]:
        """Moderate, then enhance and encode every rendition; the stages' wall times
        (ms) go into `timings`, the time an upper-rung job yielded to a lane as `yielded`."""
        t = time.perf_counter()
        moderation = self._moderate(data, job.moderation_fps)
        timings["moderate"] = _ms(t)
        enhance_s, yielded_s = [0.0], [0.0]
        hook, renditions = self._hook(job, enhance_s)
        t = time.perf_counter()
        transcoder = self._transcoder(job.renditions if hook else ())
        encoded = (
            transcoder.transcode(
                data,
                renditions,
                hook,
                expected_frames=job.frames,
                between_frames=self._lane.yielder(job.part, yielded_s),
            )
            if job.renditions
            else {}  # moderation only: the streaming encoder made every rung
        )
        timings["enhance"] = round(enhance_s[0] * 1000, 1)
        if job.part == "upper":
            timings["yielded"] = round(yielded_s[0] * 1000, 1)
        timings["encode"] = round(_ms(t) - timings["enhance"] - timings.get("yielded", 0.0), 1)
        return moderation, encoded

    def _store(self, job: SegmentJob, r: Rendition, seg: RenditionSegment) -> EncodedRendition:
        """Store one rendition's segment (an fMP4 one's init first: a published .m4s
        has its init)."""
        ext = "ts" if seg.init is None else "m4s"
        key = segment_key(job.stream_id, r.name, job.source_sequence, ext)
        if seg.init is not None:
            self._storage.put(init_key(job.stream_id, r.name), seg.init)
        self._storage.put(key, seg.data)
        return EncodedRendition(
            r.name, key, seg.size, seg.duration, seg.frames, seg.width, seg.height, seg.codecs
        )

    def _transcoder(self, hooked: tuple[Rendition, ...]) -> SegmentTranscoder:
        """The transcoder whose frame-hook batches hold at most `HOOK_PIXELS` of the
        largest rendition (so a batch of enhanced 8K frames is one frame, not eight)."""
        limit = self._encoder_settings.hook_batch
        batch = hook_batch(hooked, limit) if hooked else limit
        # This thread's own (a lane's call runs in another): PyAV's reformatters and
        # scalers must not be used by two threads at once.
        made: dict[int, SegmentTranscoder] = self._local.__dict__.setdefault("transcoders", {})
        if batch not in made:
            settings = dataclasses.replace(self._encoder_settings, hook_batch=batch)
            made[batch] = SegmentTranscoder(settings)
        return made[batch]

    # --- moderation -----------------------------------------------------------------

    def _moderate(self, data: bytes, per_second: float) -> ModerationResult | None:
        if per_second <= 0:
            return None
        moderator = self._load_moderator()
        if moderator is None:
            return ModerationResult(0, (), None, self._moderator_error)
        frames = sample_frames(data, per_second)  # CorruptSegmentError: the segment is bad
        try:
            scores = tuple(float(s) for s in moderator.score(frames))
        except Exception as e:  # noqa: BLE001 - moderation failing must not drop media
            log.exception("moderation failed")
            return ModerationResult(len(frames), (), None, f"{type(e).__name__}: {e}")
        return ModerationResult(len(frames), scores, MODERATION_MODEL)

    def _load_moderator(self) -> Any:
        with self._models_lock:
            if self._moderator is None and self._moderator_error is None:
                try:
                    self._moderator = self._moderator_factory()
                except (ImportError, OSError) as e:  # NsfwModelMissingError: ImportError
                    self._moderator_error = f"moderation unavailable: {e}"
                    log.warning("%s", self._moderator_error)
            return self._moderator

    # --- enhancement ----------------------------------------------------------------

    def _hook(
        self, job: SegmentJob, spent: list[float]
    ) -> tuple[FrameHook | None, tuple[Rendition, ...]]:
        """The transcoder's frame hook and the renditions to hand it.

        The transcoder calls its hook only for renditions marked `needs_upscale`.
        Denoise and sharpen apply to every rendition, so with either on, every
        rendition is routed through the hook (marked for it); whether a rendition is
        really upscaled by the network is still its own `needs_upscale`.
        """
        upscale = {r.name for r in job.renditions if r.needs_upscale and job.enhance}
        if not (upscale or job.denoise or job.sharpen):
            return None, job.renditions
        from models.enhance import EnhanceConfig  # lazy: torch only where needed

        with self._models_lock:
            if self._enhancer is None:
                self._enhancer = self._enhancer_factory()
            enhancer = self._enhancer

        def config(rendition: Rendition) -> EnhanceConfig:
            return EnhanceConfig(
                upscale=rendition.name in upscale,
                denoise=job.denoise,
                sharpen=job.sharpen,
                target_size=(rendition.width, rendition.height),
            )

        def hook(frames: np.ndarray, rendition: Rendition) -> np.ndarray:
            t = time.perf_counter()
            out: np.ndarray = enhancer.enhance(frames, config(rendition))
            spent[0] += time.perf_counter() - t
            return out

        def many(frames: np.ndarray, rungs: Sequence[Rendition]) -> list[np.ndarray]:
            t = time.perf_counter()
            out: list[np.ndarray] = enhancer.enhance_many(frames, [config(r) for r in rungs])
            spent[0] += time.perf_counter() - t
            return out

        renditions = job.renditions
        if job.denoise or job.sharpen:
            renditions = tuple(dataclasses.replace(r, needs_upscale=True) for r in renditions)
        if hasattr(enhancer, "enhance_many"):  # in process: rungs share their x2 passes
            hooked = [r for r in renditions if r.needs_upscale]
            hook = SharedPassHook(many, hooked, hook)
        # A 20K tile (`rendition.tile`) is enhanced from its source window only, then cut.
        return cropping_hook(hook), renditions


def _since_ms(at: float, now: float) -> float:
    """Milliseconds from a `time.time()` stamp (0: none) to `now`, never negative."""
    return round(max(0.0, now - at) * 1000, 1) if at else 0.0


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


def _default_moderator() -> Any:
    from models.nsfw import NsfwDetector

    return NsfwDetector()


def _default_enhancer() -> Any:
    import torch

    from models.enhance import Enhancer

    return Enhancer("cuda" if torch.cuda.is_available() else "cpu")
