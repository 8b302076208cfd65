"""The RTMP chunk stream: bytes from a socket in, whole messages out, and back.

`ChunkReader` is sans-IO: `feed()` takes whatever the socket gave and returns
the messages it completed, so it is tested byte by byte without a socket.
It applies Set Chunk Size and Abort itself, because they change how the very
next chunk is parsed.

Invariants worth knowing (RTMP spec 5.3.1; ffmpeg and librtmp write this way):
- Header types 1 and 2 carry a timestamp *delta*; type 0 an absolute time.
- A type-3 header that starts a new message repeats the previous delta (after a
  type 0, the delta is that header's timestamp). Getting this wrong drifts
  audio by one frame each time two same-size frames follow each other.
- When a header used the extended timestamp, its type-3 chunks carry it too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from media.rtmp.errors import ProtocolError

__all__ = ["ChunkReader", "ChunkWriter", "Message", "MessageType", "split_aggregate"]

_HEADER_SIZE = (11, 7, 3, 0)  # message header bytes for chunk types 0..3
_EXTENDED = 0xFFFFFF
_MAX_CHUNK_SIZE = 0xFFFFFF  # a message is at most 24-bit long, so bigger chunks change nothing


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


class _ChunkStream:
    """Header state of one chunk stream id: later headers inherit from it."""

    __slots__ = (
        "timestamp",
        "delta",
        "length",
        "type_id",
        "stream_id",
        "extended",
        "ext_value",
        "pending",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.ext_value = 0
        self.pending: bytearray | None = None  # a message in progress


class ChunkReader:
    """Reassembles messages from the chunks a peer sends."""

    def __init__(self, max_pending_bytes: int = 64 << 20) -> None:
        self.chunk_size = 128  # until the peer sends Set Chunk Size
        self.bytes_received = 0
        self._max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _ChunkStream] = {}

    def feed(self, data: bytes) -> list[Message]:
        """Take bytes from the peer; return every message they complete, in order."""
        self.bytes_received += len(data)
        self._buf += data
        messages: list[Message] = []
        try:
            while True:
                progressed, message = self._next_chunk()
                if not progressed:
                    break
                if message is not None:
                    self._control(message)
                    messages.append(message)
        finally:
            del self._buf[: self._pos]
            self._pos = 0
        return messages

    def _control(self, message: Message) -> None:
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            if len(message.payload) < 4:
                raise ProtocolError("short Set Chunk Size")
            size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
            if size < 1:
                raise ProtocolError("chunk size 0")
            self.chunk_size = min(size, _MAX_CHUNK_SIZE)
        elif message.type_id == MessageType.ABORT and len(message.payload) >= 4:
            stream = self._streams.get(int.from_bytes(message.payload[:4], "big"))
            if stream is not None and stream.pending is not None:
                self._pending_bytes -= len(stream.pending)
                stream.pending = None

    def _next_chunk(self) -> tuple[bool, Message | None]:
        """Parse one chunk if all of it is buffered: (parsed?, message it completed).

        Nothing is changed until the whole chunk is there, so a chunk split
        across reads is simply parsed again on the next feed."""
        buf, p, end = self._buf, self._pos, len(self._buf)
        if p >= end:
            return False, None
        fmt, csid = buf[p] >> 6, buf[p] & 0x3F
        p += 1
        if csid == 0:
            if p + 1 > end:
                return False, None
            csid, p = 64 + buf[p], p + 1
        elif csid == 1:
            if p + 2 > end:
                return False, None
            csid, p = 64 + buf[p] + (buf[p + 1] << 8), p + 2
        if p + _HEADER_SIZE[fmt] > end:
            return False, None

        stream = self._streams.get(csid)
        if stream is None:
            # Lenient like nginx-rtmp: a first header of type 1-3 inherits zeros.
            stream = self._streams[csid] = _ChunkStream()
        continuing = fmt == 3 and stream.pending is not None

        ts_field = int.from_bytes(buf[p : p + 3], "big") if fmt <= 2 else 0
        length = int.from_bytes(buf[p + 3 : p + 6], "big") if fmt <= 1 else stream.length
        type_id = buf[p + 6] if fmt <= 1 else stream.type_id
        stream_id = int.from_bytes(buf[p + 7 : p + 11], "little") if fmt == 0 else stream.stream_id
        p += _HEADER_SIZE[fmt]

        extended = ts_field == _EXTENDED if fmt <= 2 else stream.extended
        ext_value: int | None = None
        if extended:
            if p + 4 > end:
                return False, None
            ext_value = int.from_bytes(buf[p : p + 4], "big")
            if continuing and ext_value != stream.ext_value:
                # Some encoders omit the repeat on continuation chunks (SRS checks
                # the same way): these 4 bytes are payload, not a timestamp.
                ext_value = None
            else:
                p += 4

        if continuing:
            timestamp, delta = stream.timestamp, stream.delta
            assert stream.pending is not None
            received = len(stream.pending)
        else:
            field = ext_value if ext_value is not None else ts_field
            if fmt == 0:
                timestamp = delta = field
            elif fmt == 3:
                delta = ext_value if ext_value is not None else stream.delta
                timestamp = (stream.timestamp + delta) & 0xFFFFFFFF
            else:
                delta = field
                timestamp = (stream.timestamp + delta) & 0xFFFFFFFF
            received = 0

        size = min(self.chunk_size, length - received)
        if p + size > end:
            return False, None

        # The whole chunk is here: commit.
        self._pos = p + size
        if not continuing:
            if stream.pending is not None:  # a new header abandons a half-sent message
                self._pending_bytes -= len(stream.pending)
            stream.timestamp, stream.delta = timestamp, delta
            stream.length, stream.type_id, stream.stream_id = length, type_id, stream_id
            stream.extended = extended
            if ext_value is not None:
                stream.ext_value = ext_value
            stream.pending = bytearray()
        pending = stream.pending
        assert pending is not None
        pending += buf[p : p + size]
        self._pending_bytes += size
        if self._pending_bytes > self._max_pending_bytes:
            raise ProtocolError("too many bytes of unfinished messages")
        if len(pending) < length:
            return True, None
        stream.pending = None
        self._pending_bytes -= length
        return True, Message(type_id, timestamp, stream_id, bytes(pending))


class ChunkWriter:
    """Chunks the messages a server sends: a full header, then type-3 continuations."""

    def __init__(self) -> None:
        self.chunk_size = 128  # raise it only after sending Set Chunk Size

    def encode(
        self,
        type_id: int,
        payload: bytes,
        *,
        chunk_stream_id: int,
        stream_id: int = 0,
        timestamp: int = 0,
    ) -> bytes:
        if not 2 <= chunk_stream_id <= 63:
            raise ValueError("the server only uses one-byte chunk stream ids")
        extended = timestamp >= _EXTENDED
        ext = timestamp.to_bytes(4, "big") if extended else b""
        out = bytearray()
        out.append(chunk_stream_id)  # type 0
        out += min(timestamp, _EXTENDED).to_bytes(3, "big")
        out += len(payload).to_bytes(3, "big")
        out.append(type_id)
        out += stream_id.to_bytes(4, "little")
        out += ext
        for start in range(0, max(len(payload), 1), self.chunk_size):
            if start:
                out.append(0xC0 | chunk_stream_id)  # type 3
                out += ext
            out += payload[start : start + self.chunk_size]
        return bytes(out)


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
