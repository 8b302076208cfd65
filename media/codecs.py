"""RFC 6381 codec strings read from an encoded bitstream (what the encoder really wrote),
so a segment's CODECS can be checked against what the ladder advertises.

Only H.264 (`avc1.PPCCLL`) and HEVC (`hvc1.…`, ISO/IEC 14496-15 Annex E) are read:
they are the codecs our MPEG-TS renditions carry.
"""

from __future__ import annotations

__all__ = ["codec_string_from_annexb"]


def codec_string_from_annexb(data: bytes, codec: str = "h264") -> str:
    """`avc1.PPCCLL` or `hvc1.…` from the SPS in Annex B bytes (the first packet of an
    MPEG-TS segment). Raises ValueError when there is no SPS."""
    for nal in _nal_units(data):
        if codec == "h264" and nal and nal[0] & 0x1F == 7:
            rbsp = _unescape(nal[1:4])
            return f"avc1.{rbsp[0]:02x}{rbsp[1]:02x}{rbsp[2]:02x}"
        if codec == "hevc" and len(nal) > 2 and (nal[0] >> 1) & 0x3F == 33:
            rbsp = _unescape(nal[2:])
            return _hevc_string(rbsp[1:13])  # after sps_video_parameter_set_id etc.
    raise ValueError(f"no {codec} SPS in the data")


def _nal_units(data: bytes) -> list[bytes]:
    units, i = [], data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j < 0 else j
        units.append(data[start:end].rstrip(b"\x00"))
        i = j
    return units


def _unescape(b: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00)."""
    return b.replace(b"\x00\x00\x03", b"\x00\x00")


def _hevc_string(ptl: bytes) -> str:
    """ISO/IEC 14496-15 Annex E from the 12-byte general profile_tier_level."""
    space = "ABC"[(ptl[0] >> 6) - 1] if ptl[0] >> 6 else ""
    tier = "H" if ptl[0] & 0x20 else "L"
    profile = ptl[0] & 0x1F
    compat = int.from_bytes(ptl[1:5], "big")
    compat_rev = int(f"{compat:032b}"[::-1], 2)
    constraints = list(ptl[5:11])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    level = ptl[11]
    tail = "".join(f".{c:X}" for c in constraints)
    return f"hvc1.{space}{profile}.{compat_rev:X}.{tier}{level}{tail}"
