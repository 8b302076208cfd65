"""One publisher's TCP connection, from handshake to the end of its publish.

What OBS and ffmpeg send, and what this answers:

    C0 C1                     → S0 S1 S2, then read C2
    connect, createStream, publish, … → see `media.rtmp.commands`
    @setDataFrame onMetaData, audio, video → the session's FLV
    ping (User Control 6)     → ping response (User Control 7)
    FCUnpublish / deleteStream, or the socket closing → the session ends (its readers get EOF)

Invariants:
- Policy (who may publish which key) lives in the `Admission`; this module and
  `commands` only speak RTMP. One connection publishes at most one stream, as
  every encoder does.
- A connection that has not asked to publish within `setup_timeout_s` of its
  accept (handshake included), or is silent for `idle_timeout_s`, is closed;
  whatever ends it, its session ends (with the reason) before the socket closes.
- What arrives is acknowledged once per window the publisher asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from media.rtmp import amf0, flv
from media.rtmp.chunk import ChunkReader
from media.rtmp.commands import Admission, CommandHandler, Refusal, redact
from media.rtmp.errors import ProtocolError
from media.rtmp.message import Message, MessageType, split_aggregate
from media.rtmp.writer import MessageWriter

__all__ = ["Admission", "ConnectionLimits", "PublisherConnection", "Refusal", "redact"]

log = logging.getLogger(__name__)

_USER_PING_REQUEST, _USER_PING_RESPONSE = 6, 7
_HANDSHAKE_SIZE = 1536
_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    setup_timeout_s: float = 15.0  # from accept to an admitted publish (handshake included)
    idle_timeout_s: float = 30.0  # no bytes for this long: the publisher is gone
    chunk_size: int = 4096  # for what the server sends (small anyway)


class PublisherConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        admission: Admission,
        limits: ConnectionLimits,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self._chunks = ChunkReader()
        self._out = MessageWriter(writer)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._commands = CommandHandler(self._out, admission, self.peer, limits.chunk_size)
        self._ack_window = 0
        self._acked = 0

    async def run(self) -> None:
        """Serve until the publisher leaves, breaks the protocol, idles, or is refused."""
        reason = "disconnected"
        try:
            await self._serve()
        except TimeoutError:
            reason = "idle_timeout" if self._commands.published else "setup_timeout"
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "disconnected"
        except ProtocolError as e:
            reason = "protocol_error"
            log.warning("rtmp %s: protocol error: %s", self.peer, e)
        except asyncio.CancelledError:
            reason = "server_stopped"
            raise
        finally:
            self._commands.end_session(reason)
            await self._close()

    async def _serve(self) -> None:
        """The handshake, then messages until the publisher leaves or we hang up."""
        setup_deadline = asyncio.get_running_loop().time() + self._limits.setup_timeout_s
        await asyncio.wait_for(self._handshake(), self._limits.setup_timeout_s)
        while not self._commands.closing:
            timeout = self._read_timeout(setup_deadline)
            data = await asyncio.wait_for(self._reader.read(_READ_SIZE), timeout)
            if not data:
                return
            await self._receive(data)

    def _read_timeout(self, setup_deadline: float) -> float:
        timeout = self._limits.idle_timeout_s
        if not self._commands.published:  # no lingering on the port without publishing
            now = asyncio.get_running_loop().time()
            timeout = min(timeout, max(0.0, setup_deadline - now))
        return timeout

    async def _receive(self, data: bytes) -> None:
        """Bytes from the socket: dispatch the messages they complete, then acknowledge."""
        if self._commands.session is not None:
            self._commands.session.count_bytes_in(len(data))
        for message in self._chunks.feed(data):
            await self._dispatch(message)
            if self._commands.closing:
                break
        await self._acknowledge()

    async def _handshake(self) -> None:
        c0c1 = await self._reader.readexactly(1 + _HANDSHAKE_SIZE)
        if c0c1[0] != 3:  # 6 and 8 are RTMPE, anything else is not RTMP at all
            raise ProtocolError(f"unsupported RTMP version {c0c1[0]}")
        # Simple handshake: S1 has zero version bytes, so no client checks a digest.
        s1 = bytes(8) + os.urandom(_HANDSHAKE_SIZE - 8)
        s2 = c0c1[1:]  # C1 echoed
        self._writer.write(b"\x03" + s1 + s2)
        await self._writer.drain()
        await self._reader.readexactly(_HANDSHAKE_SIZE)  # C2, our S1 echoed: nothing to check

    # -- messages -------------------------------------------------------------

    async def _dispatch(self, message: Message) -> None:
        kind = message.type_id
        if kind in (MessageType.AUDIO, MessageType.VIDEO):
            # Empty bodies carry nothing a demuxer could use.
            session = self._commands.session
            if session is not None and message.payload:
                session.feed_media(kind, message.timestamp, message.payload)
        elif kind in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
            self._on_data(message)
        elif kind in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
            await self._commands.handle(message)
        elif kind == MessageType.AGGREGATE:
            for inner in split_aggregate(message):
                await self._dispatch(inner)
        elif kind == MessageType.WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self._ack_window = int.from_bytes(message.payload[:4], "big")
        elif kind == MessageType.USER_CONTROL:
            await self._on_user_control(message.payload)
        # Set Chunk Size and Abort were applied by the ChunkReader; Acknowledgement,
        # Set Peer Bandwidth and shared objects need nothing from an ingest.

    async def _on_user_control(self, payload: bytes) -> None:
        """Answer a ping; the other events (buffer length and the like) need nothing."""
        if len(payload) >= 6 and int.from_bytes(payload[:2], "big") == _USER_PING_REQUEST:
            self._out.control(
                MessageType.USER_CONTROL, _USER_PING_RESPONSE.to_bytes(2, "big") + payload[2:6]
            )
            await self._writer.drain()

    def _on_data(self, message: Message) -> None:
        session = self._commands.session
        if session is None:
            return
        # AMF3-typed messages from Flash-era encoders start with a 0 format byte, then AMF0.
        body = message.payload[1:] if message.type_id == MessageType.DATA_AMF3 else message.payload
        try:
            first, offset = amf0.decode(body)
        except ProtocolError:
            log.debug("rtmp %s: malformed data message dropped", self.peer)
            return
        if first == "@setDataFrame":  # RTMP wrapper; FLV stores what follows it
            body = body[offset:]
        session.feed_script(message.timestamp, body)

    async def _acknowledge(self) -> None:
        """Tell the publisher how much arrived, once per window it asked for."""
        received = self._chunks.bytes_received
        if self._ack_window and received - self._acked >= self._ack_window:
            self._acked = received
            self._out.control(
                MessageType.ACKNOWLEDGEMENT, (received & 0xFFFFFFFF).to_bytes(4, "big")
            )
            await self._writer.drain()

    # -- ending -----------------------------------------------------------------

    async def _close(self) -> None:
        """Hang up so that a final error status still reaches the publisher: send FIN,
        let it read and close, and only then close (closing with unread input would
        send RST, which can drop the status before the publisher reads it)."""
        writer = self._writer
        with contextlib.suppress(Exception):
            if self._commands.closing and not writer.is_closing() and writer.can_write_eof():
                await writer.drain()
                writer.write_eof()
                async with asyncio.timeout(2.0):
                    while await self._reader.read(_READ_SIZE):
                        pass
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# Media message types are FLV tag types; the session relies on it.
assert (flv.AUDIO, flv.VIDEO) == (MessageType.AUDIO, MessageType.VIDEO)
