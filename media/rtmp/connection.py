"""One publisher's TCP connection, from handshake to the end of its publish.

What OBS and ffmpeg send, and what this answers:

    C0 C1                     → S0 S1 S2, then read C2
    connect, createStream, publish, … → see `media.rtmp.commands`
    @setDataFrame onMetaData, audio, video → the session's FLV
    ping (User Control 6)     → ping response (User Control 7)
    FCUnpublish / deleteStream, or the socket closing → the session ends (its readers get EOF)
    `hang_up()` (the stream is over) → the session ends, an error onStatus, then we close

Invariants:
- Policy (who may publish which key) lives in the `Admission`; this module and
  `commands` only speak RTMP. One connection publishes at most one stream, as
  every encoder does.
- Until a publish is admitted, the peer is a stranger: it must be publishing
  within `setup_timeout_s` of its accept, and that deadline bounds every read
  *and write* (a peer that sends slowly, or never reads our answers, is closed
  on time); its messages are held to the setup limits of `IngestLimits`. Once
  admitted, the media limits apply and `idle_timeout_s` bounds reads and writes.
  The admission itself is never cut short: `on_session` may be mid-way.
- A connection over a limit is closed at once with one log line (no stream key);
  whatever ends it, its session ends (with the reason) before the socket closes.
- What arrives is acknowledged once per window the publisher asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from asyncio import FIRST_COMPLETED

from media.rtmp import amf0, flv
from media.rtmp.chunk import ChunkReader
from media.rtmp.commands import Admission, CommandHandler, Refusal, redact
from media.rtmp.errors import LimitExceededError, ProtocolError
from media.rtmp.limits import IngestLimits
from media.rtmp.message import Message, MessageType, split_aggregate
from media.rtmp.peer import Peer
from media.rtmp.session import IngestSession
from media.rtmp.writer import MessageWriter

__all__ = ["Admission", "PublisherConnection", "Refusal", "redact"]

log = logging.getLogger(__name__)

_USER_PING_REQUEST, _USER_PING_RESPONSE = 6, 7
_HANDSHAKE_SIZE = 1536
_READ_SIZE = 64 * 1024
_OUT_CHUNK_SIZE = 4096  # for what the server sends (small anyway)
_CLOSE_TIMEOUT_S = 2.0  # to say goodbye to a peer before the socket is dropped
# What an aggregate message may carry; another aggregate would let a peer nest them.
_AGGREGATED = (MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0, MessageType.DATA_AMF3)


class PublisherConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        admission: Admission,
        limits: IngestLimits,
        peer: Peer,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self.peer = peer
        self._chunks = ChunkReader(
            max_message_bytes=limits.setup_message_bytes,
            max_pending_bytes=limits.setup_pending_bytes,
            max_chunk_size=limits.max_chunk_size,
        )
        self._out = MessageWriter(writer, drain_timeout=self._time_left)
        self._commands = CommandHandler(self._out, admission, peer, limits, _OUT_CHUNK_SIZE)
        self._setup_deadline = asyncio.get_running_loop().time() + limits.setup_timeout_s
        self._media_limits = False  # raised to the media limits once a publish is admitted
        self._ack_window = 0
        self._acked = 0
        # Done once the server hangs up: wakes the read loop, which waits on the socket.
        self._hung_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def session(self) -> IngestSession | None:
        """The live publish of this connection, if any."""
        return self._commands.session

    def hang_up(self, reason: str, description: str) -> None:
        """End the publish (its session ends with `reason`; readers drain what they
        buffered, then EOF) and close the connection, after an error onStatus that
        tells the publisher `description`. Returns at once; the read loop closes."""
        self._commands.hang_up(reason, description)
        if not self._hung_up.done():
            self._hung_up.set_result(None)

    async def run(self) -> None:
        """Serve until the publisher leaves, breaks the protocol, idles, or is refused."""
        reason = "disconnected"
        try:
            await self._serve()
        except TimeoutError:
            if self._commands.published:
                reason = "idle_timeout"
            else:
                reason = "setup_timeout"
                log.info(
                    "rtmp %s: closed: not publishing %g s after connecting",
                    self.peer,
                    self._limits.setup_timeout_s,
                )
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "disconnected"
        except LimitExceededError as e:
            reason = "limit_exceeded"
            log.warning("rtmp %s: closed: %s", self.peer, e)
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
        await asyncio.wait_for(self._handshake(), self._time_left())
        while not self._commands.closing:
            data = await self._read()
            if not data:
                return
            await self._receive(data)

    async def _read(self) -> bytes:
        """The next bytes from the socket, within `_time_left()` (else TimeoutError);
        b"" when the peer closed it or the server hung up."""
        read = asyncio.ensure_future(self._reader.read(_READ_SIZE))
        try:
            done, _ = await asyncio.wait(
                (read, self._hung_up), timeout=self._time_left(), return_when=FIRST_COMPLETED
            )
        finally:
            if not read.done():  # what arrives stays in the reader's buffer
                read.cancel()
                await asyncio.wait((read,))  # the reader takes one waiter at a time
        if read in done:
            return read.result()  # after a hang-up too: the loop ends on `closing`
        if self._hung_up.done():
            return b""
        raise TimeoutError

    def _time_left(self) -> float:
        """How long the next read or write may wait: until the setup deadline while no
        publish was asked for, the idle timeout once one was."""
        timeout = self._limits.idle_timeout_s
        if not self._commands.published:  # no lingering on the port without publishing
            now = asyncio.get_running_loop().time()
            timeout = min(timeout, max(0.0, self._setup_deadline - now))
        return timeout

    async def _receive(self, data: bytes) -> None:
        """Bytes from the socket: dispatch the messages they complete, then acknowledge."""
        if self._commands.session is not None:
            self._commands.session.count_bytes_in(len(data))
        self._chunks.receive(data)
        for message in self._chunks.messages():  # parsed one by one: limits may change
            await self._dispatch(message)
            if self._commands.closing:
                break
            if self._commands.session is not None and not self._media_limits:
                self._allow_media()
        await self._acknowledge()

    def _allow_media(self) -> None:
        """The publish was admitted: the chunks after it are held to the media limits."""
        self._media_limits = True
        self._chunks.max_message_bytes = self._limits.media_message_bytes
        self._chunks.max_pending_bytes = self._limits.media_pending_bytes

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
                if inner.type_id in _AGGREGATED:
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
            await self._out.drain()

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
            await self._out.drain()

    # -- ending -----------------------------------------------------------------

    async def _close(self) -> None:
        """Hang up so that a final error status still reaches the publisher: send FIN,
        let it read and close, and only then close (closing with unread input would
        send RST, which can drop the status before the publisher reads it). A peer
        that reads nothing meanwhile is dropped: a close waits for unsent bytes."""
        writer = self._writer
        with contextlib.suppress(Exception):
            if self._commands.closing and not writer.is_closing() and writer.can_write_eof():
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await writer.drain()
                    writer.write_eof()
                    while await self._reader.read(_READ_SIZE):
                        pass
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await writer.wait_closed()
        writer.transport.abort()  # a no-op once closed; else drops what the peer left unread


# Media message types are FLV tag types; the session relies on it.
assert (flv.AUDIO, flv.VIDEO) == (MessageType.AUDIO, MessageType.VIDEO)
