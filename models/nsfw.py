"""Frame moderation: a ``FrameModerator`` protocol and an NSFW scorer built on NudeNet's detector.

``NsfwDetector`` runs the YOLOv8n detector that the ``nudenet`` package ships
(``nudenet/320n.onnx``, 18 body-part classes, 320x320 input) through onnxruntime
directly. We take only the weights file from the package and never import ``nudenet``
itself: its module imports OpenCV at load time, and we need none of its code.

``nudenet`` is optional. Its PyPI metadata says MIT, but the LICENSE files in the wheel
are AGPL-3.0, and the ONNX file's own metadata says AGPL-3.0 (Ultralytics). Until that
is settled the project does not depend on it unconditionally; without it,
``NsfwDetector()`` raises ``NsfwModelMissingError`` with the install line.

Invariants:
- Frames are ``(H, W, 3)`` uint8 RGB; any size, sizes may differ within a batch.
- ``score`` returns one float in [0, 1] per frame, in input order: the highest
  confidence of any *exposed* class anywhere in the frame (see ``UNSAFE_CLASSES``).

Known false positive: the bare torso of Big Buck Bunny's cartoon rabbit scores up to
0.75 (FEMALE_BREAST_EXPOSED); pick thresholds with docs/models.md in hand.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import av
import numpy as np

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "NUDENET_LABELS",
    "PIP_REQUIREMENT",
    "UNSAFE_CLASSES",
    "FrameModerator",
    "NsfwDetector",
    "NsfwModelMissingError",
    "packaged_model_path",
    "preferred_providers",
]

PIP_REQUIREMENT = "nudenet==3.4.2"

# Class order of nudenet 3.4's 320n.onnx, used only if a model file carries no
# "names" metadata (the shipped one does, and that metadata wins).
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

# The exposed classes that make a frame sexually explicit. Left out on purpose:
# MALE_BREAST_EXPOSED, BELLY_EXPOSED, ARMPITS_EXPOSED and FEET_EXPOSED are everyday
# sights on a live stream (sport, swimwear, a shirtless streamer), and every *_COVERED
# and FACE_* class says nothing about nudity.
UNSAFE_CLASSES: frozenset[str] = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


class NsfwModelMissingError(ImportError):
    """The optional ``nudenet`` package (ONNX weights; pulls in onnxruntime) is missing."""


@runtime_checkable
class FrameModerator(Protocol):
    """Anything that scores frames for unsafe content: 0 = safe, 1 = certainly unsafe."""

    def score(self, frames: Sequence[np.ndarray]) -> list[float]: ...


def packaged_model_path(package: str = "nudenet", filename: str = "320n.onnx") -> Path:
    """Where ``package`` keeps its model file, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NsfwModelMissingError(
            f"NsfwDetector needs the optional {package!r} package for its ONNX weights; "
            f"install it with: pip install '{PIP_REQUIREMENT}' "
            "(AGPL-3.0 weights, see docs/models.md)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise NsfwModelMissingError(
        f"{package!r} is installed but has no {filename}; reinstall '{PIP_REQUIREMENT}'"
    )


def preferred_providers() -> list[str]:
    """onnxruntime's CUDA provider first where this install has it (onnxruntime-gpu),
    then the CPU one; the CPU one alone otherwise (or without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class NsfwDetector:
    """Scores frames with NudeNet's 320n YOLOv8 detector; implements ``FrameModerator``.

    Preprocessing follows ``nudenet.NudeDetector``: pad the frame at the bottom/right to
    a black square, resize to 320x320, scale to [0, 1], NCHW RGB. We resize with
    swscale's area filter rather than OpenCV's bilinear: it is antialiased, so a
    1080p frame shrunk 6x is averaged rather than point-sampled.

    No NMS: the score is a maximum over all candidate boxes, and NMS never removes the
    highest-scoring box, so it cannot change the maximum.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        classes: Iterable[str] = UNSAFE_CLASSES,
        batch_size: int = 8,
        threads: int = 1,
        providers: Sequence[str] | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else packaged_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"NSFW model file not found: {path}")
        try:
            import onnxruntime as ort  # lazy: keeps `import models.nsfw` cheap
        except ImportError as exc:
            raise NsfwModelMissingError(
                f"NsfwDetector needs onnxruntime; install it with: pip install '{PIP_REQUIREMENT}'"
            ) from exc
        options = ort.SessionOptions()
        # Few threads by default: moderation shares the box with decoding and encoding.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
        )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        # The input is declared (batch, 3, height, width); 320n was trained at 320.
        side = model_input.shape[2]
        self.resolution = side if isinstance(side, int) else 320
        self.labels = _labels_from_metadata(self._session) or NUDENET_LABELS
        wanted = frozenset(classes)
        unknown = wanted - set(self.labels)
        if unknown:
            raise ValueError(
                f"unknown class names {sorted(unknown)}; the model has {list(self.labels)}"
            )
        if not wanted:
            raise ValueError("classes must name at least one class")
        self.classes = wanted
        self._class_rows = np.array(sorted(self.labels.index(c) for c in wanted))
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size

    def score(self, frames: Sequence[np.ndarray]) -> list[float]:
        """Highest unsafe-class confidence per frame, in [0, 1]."""
        scores: list[float] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            blob = np.stack([self._letterbox(f) for f in chunk])
            (raw,) = self._session.run(None, {self._input_name: blob})
            # raw: (N, 4 + classes, boxes); rows 4.. are per-class sigmoid confidences.
            class_conf = raw[:, 4:, :][:, self._class_rows, :]
            scores.extend(float(s) for s in class_conf.max(axis=(1, 2)).clip(0.0, 1.0))
        return scores

    def _letterbox(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"expected (H, W, 3) uint8 RGB frames, got {frame.shape} {frame.dtype}"
            )
        h, w = frame.shape[:2]
        side = self.resolution
        scale = side / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        small = src.reformat(width=new_w, height=new_h, interpolation="AREA").to_ndarray()
        canvas = np.zeros((side, side, 3), dtype=np.float32)
        canvas[:new_h, :new_w] = small
        return (canvas / 255.0).transpose(2, 0, 1)


def _labels_from_metadata(session: onnxruntime.InferenceSession) -> tuple[str, ...] | None:
    # Ultralytics exports write names as a Python dict literal: "{0: 'A', 1: 'B'}".
    raw = session.get_modelmeta().custom_metadata_map.get("names")
    if not raw:
        return None
    names = ast.literal_eval(raw)
    if not isinstance(names, dict):
        return None
    return tuple(str(names[i]) for i in range(len(names)))
