"""H.264 parameter sets (SPS/PPS) from an avcC record, put in front of a segment's
first packet when that packet does not carry them.

Invariants:
- A segment that starts at a keyframe which is not an IDR (open GOPs, periodic
  intra refresh) still starts with SPS and PPS, so it can be decoded on its own.
- Parameter sets are written as length-prefixed NAL units with the stream's NAL
  length size, like the packets; anything that is not a well-formed avcC record
  gives no parameter sets, and packets pass unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from av.packet import Packet
from av.stream import Stream

__all__ = ["ParameterSets"]

_IDR_OR_SPS = frozenset({5, 7})


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """SPS and PPS as length-prefixed NAL units, and the NAL length size."""

    data: bytes = b""
    nal_length_size: int = 4

    @classmethod
    def from_avcc(cls, extradata: bytes | None) -> ParameterSets:
        """Read an avcC record (FLV/MP4 H.264); empty for anything else."""
        if not extradata or len(extradata) < 7 or extradata[0] != 1:
            return cls()
        length_size = (extradata[4] & 0x03) + 1
        out, i = [], 5
        try:
            for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count
                count = extradata[i] & count_mask
                i += 1
                for _ in range(count):
                    size = int.from_bytes(extradata[i : i + 2], "big")
                    nal = extradata[i + 2 : i + 2 + size]
                    if len(nal) != size:
                        return cls()
                    out.append(size.to_bytes(length_size, "big") + nal)
                    i += 2 + size
        except IndexError:
            return cls()
        return cls(b"".join(out), length_size)

    def prefix(self, packet: Packet[Stream]) -> Packet[Stream]:
        """Prefix SPS/PPS to a segment's first packet when it is not an IDR.

        The muxer's h264_mp4toannexb filter repeats the parameter sets only before IDR
        pictures, but encoders with open GOPs or periodic intra refresh mark recovery-
        point I-frames as keyframes too; a segment starting at one would have no SPS
        and could be decoded by no one (neither the transcoder nor a player joining).
        """
        if not self.data:
            return packet
        data = bytes(packet)
        if _IDR_OR_SPS & _nal_types(data, self.nal_length_size):
            return packet
        fixed = Packet(self.data + data)
        fixed.pts, fixed.dts, fixed.duration = packet.pts, packet.dts, packet.duration
        fixed.time_base = packet.time_base
        fixed.is_keyframe = True
        fixed.stream = packet.stream
        return fixed


def _nal_types(data: bytes, length_size: int) -> set[int]:
    types, i = set(), 0
    while i + length_size < len(data):
        size = int.from_bytes(data[i : i + length_size], "big")
        types.add(data[i + length_size] & 0x1F)
        i += length_size + size
    return types
