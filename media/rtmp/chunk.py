"""The RTMP chunk stream, reading side: bytes from a socket in, whole messages out.

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

Limits, which a connection raises once its publish is admitted: a message is
refused on its header when it is longer than `max_message_bytes` or when the
lengths of the unfinished messages, its own included, would pass
`max_pending_bytes` — so a peer never makes the reader hold more than that, and
is cut off before it sends the bytes. A Set Chunk Size over `max_chunk_size`, and
more than `max_chunk_streams` chunk stream ids, are refused too. The bytes of
the one chunk being received are held besides (at most a chunk, i.e. a message).

The messages themselves are in `media.rtmp.message`, the writing side in
`media.rtmp.writer`; both are re-exported here, where callers have imported them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from media.rtmp.errors import LimitExceededError, ProtocolError
from media.rtmp.message import EXTENDED_TIMESTAMP, Message, MessageType, split_aggregate
from media.rtmp.writer import ChunkWriter

__all__ = ["ChunkReader", "ChunkWriter", "Message", "MessageType", "split_aggregate"]

_HEADER_SIZE = (11, 7, 3, 0)  # message header bytes for chunk types 0..3
_MAX_MESSAGE_SIZE = 0xFFFFFF  # a message's length field is 24-bit
_MAX_CHUNK_SIZE = _MAX_MESSAGE_SIZE  # so bigger chunks change nothing


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


@dataclass(frozen=True, slots=True)
class _Header:
    """A chunk's message header, with what a type 1-3 header leaves out taken from its
    chunk stream."""

    fmt: int
    timestamp: int  # type 0: absolute; 1, 2: the delta; 3: the chunk stream's last delta
    length: int
    type_id: int
    stream_id: int
    extended: bool  # an extended timestamp follows


class _Incomplete(Exception):
    """The buffer ends inside this chunk: it is parsed again after the next feed."""


class _Cursor:
    """Reads one chunk from the buffer, raising `_Incomplete` where the buffer ends."""

    __slots__ = ("_buf", "pos")

    def __init__(self, buf: bytearray, pos: int) -> None:
        self._buf = buf
        self.pos = pos

    def peek(self, n: int) -> bytearray:
        if self.pos + n > len(self._buf):
            raise _Incomplete
        return self._buf[self.pos : self.pos + n]

    def take(self, n: int) -> bytearray:
        data = self.peek(n)
        self.pos += n
        return data


class ChunkReader:
    """Reassembles messages from the chunks a peer sends, within limits (see module
    docstring); the defaults are the protocol's own."""

    def __init__(
        self,
        *,
        max_message_bytes: int = _MAX_MESSAGE_SIZE,
        max_pending_bytes: int = 64 << 20,
        max_chunk_size: int = _MAX_CHUNK_SIZE,
        max_chunk_streams: int = 64,
    ) -> None:
        self.chunk_size = 128  # until the peer sends Set Chunk Size
        self.bytes_received = 0
        self.max_message_bytes = max_message_bytes
        self.max_pending_bytes = max_pending_bytes
        self._max_chunk_size = max_chunk_size
        self._max_chunk_streams = max_chunk_streams
        self._pending_bytes = 0
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _ChunkStream] = {}

    def feed(self, data: bytes) -> list[Message]:
        """Take bytes from the peer; return every message they complete, in order."""
        self.receive(data)
        return list(self.messages())

    def receive(self, data: bytes) -> None:
        """Take bytes from the peer; `messages()` parses them."""
        self.bytes_received += len(data)
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def messages(self) -> Iterator[Message]:
        """Each message the bytes received complete, in order. Parsed one at a time, so a
        limit the caller changes on seeing one message applies to the chunks after it."""
        while True:
            progressed, message = self._next_chunk()
            if not progressed:
                break
            if message is not None:
                self._control(message)
                yield message
        del self._buf[: self._pos]
        self._pos = 0

    def _control(self, message: Message) -> None:
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            if len(message.payload) < 4:
                raise ProtocolError("short Set Chunk Size")
            size = int.from_bytes(message.payload[:4], "big") & 0x7FFFFFFF
            if size < 1:
                raise ProtocolError("chunk size 0")
            if size > self._max_chunk_size:
                raise LimitExceededError(
                    f"chunk size {size} is over the limit of {self._max_chunk_size}"
                )
            self.chunk_size = min(size, _MAX_CHUNK_SIZE)
        elif message.type_id == MessageType.ABORT and len(message.payload) >= 4:
            stream = self._streams.get(int.from_bytes(message.payload[:4], "big"))
            if stream is not None and stream.pending is not None:
                self._pending_bytes -= stream.length
                stream.pending = None

    def _next_chunk(self) -> tuple[bool, Message | None]:
        """Parse one chunk if all of it is buffered: (parsed?, message it completed).

        Nothing is changed until the whole chunk is there, so a chunk split
        across reads is simply parsed again on the next feed."""
        cursor = _Cursor(self._buf, self._pos)
        try:
            fmt, csid = _basic_header(cursor)
            stream = self._stream(csid)
            header = _message_header(cursor, fmt, stream)
            continuing = fmt == 3 and stream.pending is not None
            ext_value = _extended_timestamp(cursor, header, stream, continuing)
            received = len(stream.pending or b"") if continuing else 0
            if not continuing:
                self._check_message(stream, header.length)
            payload = cursor.take(min(self.chunk_size, header.length - received))
        except _Incomplete:
            return False, None
        # The whole chunk is here: commit.
        self._pos = cursor.pos
        if not continuing:
            self._begin_message(stream, header, ext_value)
        return True, self._add_payload(stream, payload)

    def _check_message(self, stream: _ChunkStream, length: int) -> None:
        """A message starts: refuse it on its header, before its bytes arrive, when it
        is too long or would take the unfinished messages' lengths over the limit."""
        if length > self.max_message_bytes:
            raise LimitExceededError(
                f"a message of {length} bytes is over the limit of {self.max_message_bytes}"
            )
        abandoned = stream.length if stream.pending is not None else 0
        pending = self._pending_bytes - abandoned + length
        if pending > self.max_pending_bytes:
            raise LimitExceededError(
                f"unfinished messages of {pending} bytes are over the limit of"
                f" {self.max_pending_bytes}"
            )

    def _stream(self, csid: int) -> _ChunkStream:
        stream = self._streams.get(csid)
        if stream is None:
            if len(self._streams) >= self._max_chunk_streams:
                raise LimitExceededError(f"more than {self._max_chunk_streams} chunk streams")
            # Lenient like nginx-rtmp: a first header of type 1-3 inherits zeros.
            stream = self._streams[csid] = _ChunkStream()
        return stream

    def _begin_message(self, stream: _ChunkStream, header: _Header, ext_value: int | None) -> None:
        """A chunk that starts a message: its header becomes the chunk stream's state."""
        if stream.pending is not None:  # a new header abandons a half-sent message
            self._pending_bytes -= stream.length
        self._pending_bytes += header.length
        stream.timestamp, stream.delta = _timing(header, stream, ext_value)
        stream.length, stream.type_id = header.length, header.type_id
        stream.stream_id, stream.extended = header.stream_id, header.extended
        if ext_value is not None:
            stream.ext_value = ext_value
        stream.pending = bytearray()

    def _add_payload(self, stream: _ChunkStream, payload: bytearray) -> Message | None:
        """Append a chunk's payload to its message; the message once it is whole."""
        pending = stream.pending
        assert pending is not None
        pending += payload
        if len(pending) < stream.length:
            return None
        stream.pending = None
        self._pending_bytes -= stream.length
        return Message(stream.type_id, stream.timestamp, stream.stream_id, bytes(pending))


def _basic_header(cursor: _Cursor) -> tuple[int, int]:
    """(header type, chunk stream id): ids from 64 on take one or two more bytes."""
    first = cursor.take(1)[0]
    fmt, csid = first >> 6, first & 0x3F
    if csid == 0:
        csid = 64 + cursor.take(1)[0]
    elif csid == 1:
        low, high = cursor.take(2)
        csid = 64 + low + (high << 8)
    return fmt, csid


def _message_header(cursor: _Cursor, fmt: int, stream: _ChunkStream) -> _Header:
    """Type 0 has every field; 1 inherits the message stream id; 2 also length and
    type; 3 everything (its delta included)."""
    raw = cursor.take(_HEADER_SIZE[fmt])
    ts_field = int.from_bytes(raw[0:3], "big") if fmt <= 2 else stream.delta
    return _Header(
        fmt=fmt,
        timestamp=ts_field,
        length=int.from_bytes(raw[3:6], "big") if fmt <= 1 else stream.length,
        type_id=raw[6] if fmt <= 1 else stream.type_id,
        stream_id=int.from_bytes(raw[7:11], "little") if fmt == 0 else stream.stream_id,
        extended=ts_field == EXTENDED_TIMESTAMP if fmt <= 2 else stream.extended,
    )


def _extended_timestamp(
    cursor: _Cursor, header: _Header, stream: _ChunkStream, continuing: bool
) -> int | None:
    """The 32-bit timestamp that follows a header whose field was 0xFFFFFF (and that
    header's type-3 chunks); None when there is none."""
    if not header.extended:
        return None
    value = int.from_bytes(cursor.peek(4), "big")
    if continuing and value != stream.ext_value:
        # Some encoders omit the repeat on continuation chunks (SRS checks the
        # same way): these 4 bytes are payload, not a timestamp.
        return None
    cursor.take(4)
    return value


def _timing(header: _Header, stream: _ChunkStream, ext_value: int | None) -> tuple[int, int]:
    """(timestamp, delta) of a message's first chunk: type 0 is absolute, the others
    add a delta (a type 3 repeats the last one) to the chunk stream's timestamp."""
    value = ext_value if ext_value is not None else header.timestamp
    if header.fmt == 0:
        return value, value
    return (stream.timestamp + value) & 0xFFFFFFFF, value
