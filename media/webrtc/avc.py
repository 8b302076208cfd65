"""H.264 and AAC as FLV carries them: what an encoder emits, re-framed into tag bodies.

An encoder opened with a global header gives H.264 parameter sets as Annex B (start
codes) in its extradata and pictures as Annex B too; FLV wants an avcC record once
(the sequence header) and each picture as length-prefixed NAL units (AVCC). AAC
needs no conversion: its extradata is the AudioSpecificConfig, its packets raw.

Invariants:
- A body is exactly what an RTMP publisher sends for the same media (legacy FLV
  layout: codec id 7 for AVC, sound format 10 for AAC), so `media.rtmp.flv`'s
  classifiers and FFmpeg's FLV demuxer read it unchanged.
- Pictures carry no composition offset: the encoder makes no B-frames (pts = dts).
"""

from __future__ import annotations

__all__ = [
    "aac_config_body",
    "aac_frame_body",
    "avc_config_body",
    "avc_frame_body",
    "avcc_record",
    "split_annexb",
]

_START = b"\x00\x00\x01"
_SPS, _PPS = 7, 8
_AVC_KEY, _AVC_INTER = 0x17, 0x27  # frame type (1 key, 2 inter) << 4 | codec id 7
_AAC = 0xAF  # sound format 10 (AAC), 44 kHz, 16-bit, stereo: fixed by the FLV spec for AAC


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    # A 4-byte start code is a zero byte and a 3-byte one; NAL units never end in a
    # zero byte (the RBSP stop bit), so trailing zeros belong to the next start code.
    return [nal.rstrip(b"\x00") for nal in data.split(_START) if nal.rstrip(b"\x00")]


def avcc_record(extradata: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord (avcC) from Annex B SPS/PPS; ValueError if the
    extradata holds no SPS or PPS."""
    nals = split_annexb(extradata)
    sps = [n for n in nals if n[0] & 0x1F == _SPS]
    pps = [n for n in nals if n[0] & 0x1F == _PPS]
    if not sps or not pps or len(sps[0]) < 4:
        raise ValueError("the encoder's extradata has no H.264 SPS/PPS")
    out = bytearray((1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)))
    for nal in sps:
        out += len(nal).to_bytes(2, "big") + nal
    out.append(len(pps))
    for nal in pps:
        out += len(nal).to_bytes(2, "big") + nal
    return bytes(out)


def avc_config_body(extradata: bytes) -> bytes:
    """The video sequence header: AVC packet type 0, then the avcC record."""
    return bytes((_AVC_KEY, 0, 0, 0, 0)) + avcc_record(extradata)


def avc_frame_body(annexb: bytes, keyframe: bool) -> bytes:
    """One picture: AVC packet type 1, composition offset 0, 4-byte-length NAL units."""
    nals = b"".join(len(n).to_bytes(4, "big") + n for n in split_annexb(annexb))
    return bytes((_AVC_KEY if keyframe else _AVC_INTER, 1, 0, 0, 0)) + nals


def aac_config_body(audio_specific_config: bytes) -> bytes:
    return bytes((_AAC, 0)) + audio_specific_config


def aac_frame_body(raw: bytes) -> bytes:
    return bytes((_AAC, 1)) + raw
