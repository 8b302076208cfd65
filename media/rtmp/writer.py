"""What the server sends a publisher: messages, chunked onto its socket.

Invariants:
- Every message goes out as one type-0 chunk followed by type-3 continuations, on a
  one-byte chunk stream id (2-63); an extended timestamp is repeated on each
  continuation, as a reader expects (see `media.rtmp.chunk`).
- The chunk size grows only after Set Chunk Size was written with the old one
  (`MessageWriter.set_chunk_size`), so the peer always knows how to read the next chunk.
- Protocol control goes on chunk stream 2 (the spec reserves it for them), command
  results on 3, onStatus on 5.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from media.rtmp import amf0
from media.rtmp.message import EXTENDED_TIMESTAMP, MessageType

__all__ = ["ChunkWriter", "MessageWriter"]

_CONTROL_CSID, _COMMAND_CSID, _STATUS_CSID = 2, 3, 5


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
        extended = timestamp >= EXTENDED_TIMESTAMP
        ext = timestamp.to_bytes(4, "big") if extended else b""
        out = bytearray()
        out.append(chunk_stream_id)  # type 0
        out += min(timestamp, EXTENDED_TIMESTAMP).to_bytes(3, "big")
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


class MessageWriter:
    """The server's messages to one publisher, written (not yet drained) to its socket."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        drain_timeout: Callable[[], float | None] = lambda: None,
    ) -> None:
        """`drain_timeout()`: how long a drain may wait for the peer to read, asked at
        each drain (a peer that never reads must not hold its connection open)."""
        self._writer = writer
        self._drain_timeout = drain_timeout
        self._chunks = ChunkWriter()

    def control(self, type_id: int, payload: bytes) -> None:
        """A protocol control or user control message."""
        self._send(type_id, payload, _CONTROL_CSID)

    def set_chunk_size(self, size: int) -> None:
        """Announce a chunk size, then chunk what follows with it."""
        self.control(MessageType.SET_CHUNK_SIZE, size.to_bytes(4, "big"))
        self._chunks.chunk_size = size

    def command(self, name: str, txn: float, *values: Any) -> None:
        """An AMF0 command on the connection, such as `_result`."""
        self._send(MessageType.COMMAND_AMF0, amf0.encode(name, txn, *values), _COMMAND_CSID)

    def status(self, stream_id: int, level: str, code: str, description: str) -> None:
        """An onStatus to the NetStream `stream_id`."""
        info = {"level": level, "code": code, "description": description}
        self._send(
            MessageType.COMMAND_AMF0,
            amf0.encode("onStatus", 0.0, None, info),
            _STATUS_CSID,
            stream_id,
        )

    async def drain(self) -> None:
        """Wait until the socket takes what was written; TimeoutError past the timeout."""
        async with asyncio.timeout(self._drain_timeout()):
            await self._writer.drain()

    def _send(self, type_id: int, payload: bytes, csid: int, stream_id: int = 0) -> None:
        self._writer.write(
            self._chunks.encode(type_id, payload, chunk_stream_id=csid, stream_id=stream_id)
        )
