"""RTMP messages, the unit the chunk stream carries: type ids, the message itself,
and the aggregate message unpacked.

Invariants:
- Timestamps are the publisher's 32-bit milliseconds, wrapping; an aggregate's inner
  messages keep their spacing, offset to the aggregate's own timestamp.
- Media message type ids are FLV tag types (audio 8, video 9), so a body goes into
  an FLV tag unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from media.rtmp.errors import ProtocolError

__all__ = ["EXTENDED_TIMESTAMP", "Message", "MessageType", "split_aggregate"]

# A 24-bit timestamp field of all ones: the real timestamp follows in 4 more bytes.
EXTENDED_TIMESTAMP = 0xFFFFFF


class MessageType(enum.IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


@dataclass(frozen=True, slots=True)
class Message:
    type_id: int
    timestamp: int  # milliseconds, 32-bit, as the publisher stamped it
    stream_id: int  # the NetStream it belongs to (0: the connection itself)
    payload: bytes


def split_aggregate(message: Message) -> list[Message]:
    """The audio/video/data messages packed in an aggregate message.

    Its body is FLV tags; their timestamps are made relative to the first and
    then offset by the aggregate's own timestamp."""
    out: list[Message] = []
    body, p, base = message.payload, 0, None
    while p + 11 <= len(body):
        tag_type = body[p]
        size = int.from_bytes(body[p + 1 : p + 4], "big")
        ts = int.from_bytes(body[p + 4 : p + 7], "big") | (body[p + 7] << 24)
        if p + 11 + size > len(body):
            raise ProtocolError("aggregate message truncated")
        base = ts if base is None else base
        timestamp = (message.timestamp + ts - base) & 0xFFFFFFFF
        out.append(Message(tag_type, timestamp, message.stream_id, body[p + 11 : p + 11 + size]))
        p += 11 + size + 4  # tag, then its back pointer
    return out
