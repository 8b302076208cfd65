"""One publisher's TCP connection, from handshake to the end of its publish.

What OBS and ffmpeg send, and what this answers:

    C0 C1                     → S0 S1 S2, then read C2
    connect {app}             → Window Ack Size, Set Peer Bandwidth, Set Chunk Size, _result
    releaseStream, FCPublish  → _result
    createStream              → _result (a stream id)
    publish key               → the `Admission` decides: StreamBegin + NetStream.Publish.Start,
                                or an error onStatus and the socket is closed
    @setDataFrame onMetaData, audio, video → the session's FLV
    FCUnpublish / deleteStream, or the socket closing → the session ends (its readers get EOF)

Policy (who may publish which key) lives in the `Admission`; this module only
speaks RTMP. One connection publishes at most one stream, as every encoder does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from media.rtmp import amf0, flv
from media.rtmp.chunk import ChunkReader, ChunkWriter, Message, MessageType, split_aggregate
from media.rtmp.errors import ProtocolError
from media.rtmp.session import IngestSession

__all__ = ["Admission", "ConnectionLimits", "PublisherConnection", "Refusal", "redact"]

log = logging.getLogger(__name__)

_CONTROL_CSID, _COMMAND_CSID, _STATUS_CSID = 2, 3, 5
_WINDOW_ACK_SIZE = 2_500_000
_USER_STREAM_BEGIN, _USER_PING_REQUEST, _USER_PING_RESPONSE = 0, 6, 7
_HANDSHAKE_SIZE = 1536
_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a publish was refused, as the onStatus the publisher receives."""

    code: str  # NetStream.Publish.BadName | .Denied | .Failed
    description: str


class Admission(Protocol):
    """The server's side of a publish: routing by key, authorization, the registry."""

    async def admit(self, app: str, stream_key: str, peer: str) -> IngestSession | Refusal: ...

    def release(self, session: IngestSession) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    setup_timeout_s: float = 15.0  # from accept to an admitted publish (handshake included)
    idle_timeout_s: float = 30.0  # no bytes for this long: the publisher is gone
    chunk_size: int = 4096  # for what the server sends (small anyway)


def redact(stream_key: str) -> str:
    """A stream key is a password: logs get its first characters only."""
    return f"{stream_key[:4]}…" if len(stream_key) > 8 else "…"


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
        self._admission = admission
        self._limits = limits
        self._chunks = ChunkReader()
        self._out = ChunkWriter()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._app: str | None = None
        self._next_stream_id = 0
        self._session: IngestSession | None = None
        self._published = False  # one publish per connection
        self._closing = False  # set once we decided to hang up
        self._ack_window = 0
        self._acked = 0

    async def run(self) -> None:
        """Serve until the publisher leaves, breaks the protocol, idles, or is refused."""
        reason = "disconnected"
        try:
            await self._serve()
        except TimeoutError:
            reason = "idle_timeout" if self._published else "setup_timeout"
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "disconnected"
        except ProtocolError as e:
            reason = "protocol_error"
            log.warning("rtmp %s: protocol error: %s", self.peer, e)
        except asyncio.CancelledError:
            reason = "server_stopped"
            raise
        finally:
            self._end_session(reason)
            await self._close()

    async def _serve(self) -> None:
        """The handshake, then messages until the publisher leaves or we hang up."""
        setup_deadline = asyncio.get_running_loop().time() + self._limits.setup_timeout_s
        await asyncio.wait_for(self._handshake(), self._limits.setup_timeout_s)
        while not self._closing:
            timeout = self._read_timeout(setup_deadline)
            data = await asyncio.wait_for(self._reader.read(_READ_SIZE), timeout)
            if not data:
                return
            await self._receive(data)

    def _read_timeout(self, setup_deadline: float) -> float:
        timeout = self._limits.idle_timeout_s
        if not self._published:  # no lingering on the port without publishing
            now = asyncio.get_running_loop().time()
            timeout = min(timeout, max(0.0, setup_deadline - now))
        return timeout

    async def _receive(self, data: bytes) -> None:
        """Bytes from the socket: dispatch the messages they complete, then acknowledge."""
        if self._session is not None:
            self._session.count_bytes_in(len(data))
        for message in self._chunks.feed(data):
            await self._dispatch(message)
            if self._closing:
                break
        await self._acknowledge()

    # -- handshake ------------------------------------------------------------

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
            if self._session is not None and message.payload:
                self._session.feed_media(kind, message.timestamp, message.payload)
        elif kind in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
            self._on_data(message)
        elif kind in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
            await self._on_command(message)
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
            self._send(
                MessageType.USER_CONTROL,
                _USER_PING_RESPONSE.to_bytes(2, "big") + payload[2:6],
                _CONTROL_CSID,
            )
            await self._writer.drain()

    def _on_data(self, message: Message) -> None:
        if self._session is None:
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
        self._session.feed_script(message.timestamp, body)

    async def _on_command(self, message: Message) -> None:
        amf3 = message.type_id == MessageType.COMMAND_AMF3
        values = amf0.decode_all(message.payload[1:] if amf3 else message.payload)
        if not values or not isinstance(values[0], str):
            raise ProtocolError("command without a name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[2:]
        if name == "connect":
            self._on_connect(txn, args[0] if args and isinstance(args[0], dict) else {})
        elif name in ("releaseStream", "FCPublish"):
            self._send_command("_result", txn, None)
        elif name == "createStream":
            self._next_stream_id += 1
            self._send_command("_result", txn, None, float(self._next_stream_id))
        elif name == "publish":
            await self._on_publish(message.stream_id, args)
        elif name in ("FCUnpublish", "closeStream", "deleteStream"):
            self._end_session("unpublished")
        elif name in ("play", "play2"):
            self._send_status(
                message.stream_id,
                "error",
                "NetStream.Play.Failed",
                "this server only accepts publishing",
            )
            self._closing = True
        else:
            log.debug("rtmp %s: ignoring command %r", self.peer, name)
        await self._writer.drain()

    def _on_connect(self, txn: float, command: dict[str, Any]) -> None:
        if self._app is not None:
            raise ProtocolError("connect sent twice")
        app = command.get("app")
        self._app = app.strip("/") if isinstance(app, str) else ""
        self._send(MessageType.WINDOW_ACK_SIZE, _WINDOW_ACK_SIZE.to_bytes(4, "big"), _CONTROL_CSID)
        # Limit type 2 (dynamic): the publisher keeps its own window.
        self._send(
            MessageType.SET_PEER_BANDWIDTH,
            _WINDOW_ACK_SIZE.to_bytes(4, "big") + b"\x02",
            _CONTROL_CSID,
        )
        self._send(
            MessageType.SET_CHUNK_SIZE, self._limits.chunk_size.to_bytes(4, "big"), _CONTROL_CSID
        )
        self._out.chunk_size = self._limits.chunk_size
        self._send_command(
            "_result",
            txn,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },  # AMF0 whatever was asked: all publishers accept it
        )

    async def _on_publish(self, stream_id: int, args: list[Any]) -> None:
        if self._app is None:
            raise ProtocolError("publish before connect")
        key = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        result = await self._admit(self._app, key)
        if isinstance(result, IngestSession):
            self._session = result
            self._send(
                MessageType.USER_CONTROL,
                _USER_STREAM_BEGIN.to_bytes(2, "big") + stream_id.to_bytes(4, "big"),
                _CONTROL_CSID,
            )
            self._send_status(
                stream_id, "status", "NetStream.Publish.Start", f"{key} is now published"
            )
        else:
            self._refuse(stream_id, key, result)

    async def _admit(self, app: str, key: str) -> IngestSession | Refusal:
        """The session for a publish of `key`, or why not (one publish per connection)."""
        if self._published:
            return Refusal("NetStream.Publish.BadName", "this connection already published")
        if not key:
            return Refusal("NetStream.Publish.BadName", "no stream key")
        self._published = True
        return await self._admission.admit(app, key, self.peer)

    def _refuse(self, stream_id: int, key: str, refusal: Refusal) -> None:
        """Tell the publisher why, then hang up."""
        log.info(
            "rtmp %s: publish of %s refused: %s (%s)",
            self.peer,
            redact(key),
            refusal.code,
            refusal.description,
        )
        self._send_status(stream_id, "error", refusal.code, refusal.description)
        self._closing = True

    async def _acknowledge(self) -> None:
        """Tell the publisher how much arrived, once per window it asked for."""
        received = self._chunks.bytes_received
        if self._ack_window and received - self._acked >= self._ack_window:
            self._acked = received
            self._send(
                MessageType.ACKNOWLEDGEMENT,
                (received & 0xFFFFFFFF).to_bytes(4, "big"),
                _CONTROL_CSID,
            )
            await self._writer.drain()

    # -- writing and ending ---------------------------------------------------

    def _send(self, type_id: int, payload: bytes, csid: int, stream_id: int = 0) -> None:
        self._writer.write(
            self._out.encode(type_id, payload, chunk_stream_id=csid, stream_id=stream_id)
        )

    def _send_command(self, name: str, txn: float, *values: Any) -> None:
        self._send(MessageType.COMMAND_AMF0, amf0.encode(name, txn, *values), _COMMAND_CSID)

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._send(
            MessageType.COMMAND_AMF0,
            amf0.encode("onStatus", 0.0, None, info),
            _STATUS_CSID,
            stream_id,
        )

    def _end_session(self, reason: str) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.end(reason)
            self._admission.release(session)
            log.info("rtmp %s: stream %s ended (%s)", self.peer, session.stream_id, reason)

    async def _close(self) -> None:
        """Hang up so that a final error status still reaches the publisher: send FIN,
        let it read and close, and only then close (closing with unread input would
        send RST, which can drop the status before the publisher reads it)."""
        writer = self._writer
        with contextlib.suppress(Exception):
            if self._closing and not writer.is_closing() and writer.can_write_eof():
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
