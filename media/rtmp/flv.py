"""FLV, the byte stream a session exposes: RTMP audio/video/data message bodies are
FLV tag bodies already, so a tag is an 11-byte header, the body and a back pointer.

The classifiers read the first bytes of a video/audio body in both the legacy
layout (codec id in the low nibble) and the Enhanced RTMP one (IsExHeader bit,
packet type in the low nibble, FourCC codec), which carries HEVC, AV1 and VP9.
"""

from __future__ import annotations

__all__ = [
    "AUDIO",
    "SCRIPT",
    "VIDEO",
    "file_header",
    "is_audio_sequence_header",
    "is_keyframe",
    "is_video_frame",
    "is_video_sequence_header",
    "tag",
]

AUDIO, VIDEO, SCRIPT = 8, 9, 18  # tag types, equal to the RTMP message type ids

_AVC, _HEVC_LEGACY = 7, 12  # legacy codec ids with an AVCPacketType byte
_EX_HEADER = 0x80
_EX_SEQUENCE_START, _EX_CODED_FRAMES, _EX_SEQUENCE_END = 0, 1, 2
_EX_CODED_FRAMES_X, _EX_MPEG2TS_SEQUENCE_START, _EX_MULTITRACK = 3, 5, 6
_KEYFRAME, _COMMAND_FRAME = 1, 5
_AAC, _AUDIO_EX_HEADER = 10, 9


def file_header(*, has_audio: bool, has_video: bool) -> bytes:
    """FLV signature, version 1, stream flags, header size, PreviousTagSize0."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + (9).to_bytes(4, "big") + b"\x00\x00\x00\x00"


def tag(tag_type: int, timestamp: int, body: bytes) -> bytes:
    """One tag and its back pointer. FLV splits the 32-bit ms timestamp 24 + 8."""
    size = len(body)
    header = bytes(
        (
            tag_type,
            (size >> 16) & 0xFF,
            (size >> 8) & 0xFF,
            size & 0xFF,
            (timestamp >> 16) & 0xFF,
            (timestamp >> 8) & 0xFF,
            timestamp & 0xFF,
            (timestamp >> 24) & 0xFF,
            0,
            0,
            0,  # stream id, always 0
        )
    )
    return header + body + (11 + size).to_bytes(4, "big")


def is_keyframe(body: bytes) -> bool:
    """A video body whose frame type is key (both layouts keep it in bits 4-6)."""
    return bool(body) and (body[0] >> 4) & 0x07 == _KEYFRAME


def is_video_sequence_header(body: bytes) -> bool:
    """Decoder configuration (avcC / hvcC / av1C …), which a late reader needs first."""
    if not body:
        return False
    if body[0] & _EX_HEADER:
        return body[0] & 0x0F in (_EX_SEQUENCE_START, _EX_MPEG2TS_SEQUENCE_START)
    return body[0] & 0x0F in (_AVC, _HEVC_LEGACY) and len(body) > 1 and body[1] == 0


def is_video_frame(body: bytes) -> bool:
    """A coded picture: not a sequence header, end of sequence or command frame."""
    if not body or (body[0] >> 4) & 0x07 == _COMMAND_FRAME:
        return False
    if body[0] & _EX_HEADER:
        return body[0] & 0x0F in (_EX_CODED_FRAMES, _EX_CODED_FRAMES_X, _EX_MULTITRACK)
    if body[0] & 0x0F in (_AVC, _HEVC_LEGACY):
        return len(body) > 1 and body[1] == 1
    return True


def is_audio_sequence_header(body: bytes) -> bool:
    """AAC AudioSpecificConfig, or an Enhanced RTMP audio SequenceStart."""
    if not body:
        return False
    if body[0] >> 4 == _AAC:
        return len(body) > 1 and body[1] == 0
    return body[0] >> 4 == _AUDIO_EX_HEADER and body[0] & 0x0F == _EX_SEQUENCE_START
