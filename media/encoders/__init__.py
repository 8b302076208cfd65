"""Video encoders behind one protocol, chosen by settings (owncast's `core/transcoder`
has the same shape: `encoder.go` beside `encoder_nvenc.go`).

    base.py      the `Encoder` protocol, `EncoderSettings`, the errors
    software.py  libx264, libx265, libsvtav1
    nvenc.py     h264_nvenc, hevc_nvenc, av1_nvenc
    registry.py  `EncoderRegistry`: probes what opens, picks one per rendition

A new encoder family is a new module with classes that satisfy `Encoder`, listed in
`registry.ENCODERS`. Errors:

    ValueError
    └── RenditionNotEncodableError   a rendition above the codec's levels (or hardware)
    RuntimeError
    └── EncoderUnavailableError      nothing the settings allow opens here
"""

from .base import (
    Encoder,
    EncoderSettings,
    EncoderUnavailableError,
    HardwareMode,
    RenditionNotEncodableError,
    VideoCodec,
)
from .nvenc import Nvenc
from .registry import ENCODERS, EncoderRegistry, Probe, default_registry, open_probe
from .software import LibSvtAv1, LibX264, LibX265

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderRegistry",
    "EncoderSettings",
    "EncoderUnavailableError",
    "HardwareMode",
    "LibSvtAv1",
    "LibX264",
    "LibX265",
    "Nvenc",
    "Probe",
    "RenditionNotEncodableError",
    "VideoCodec",
    "default_registry",
    "open_probe",
]
