"""The commands of a publisher's RTMP dialogue, and what the server answers:

    connect {app}             → Window Ack Size, Set Peer Bandwidth, Set Chunk Size, _result
    releaseStream, FCPublish  → _result
    createStream              → _result (a stream id)
    publish key               → the `Admission` decides: StreamBegin + NetStream.Publish.Start,
                                or an error onStatus and the connection closes
    FCUnpublish / deleteStream → the session ends (its readers get EOF)
    play                      → an error onStatus and the connection closes
    (the server hangs up)     → the session ends, an error onStatus
                                (NetStream.Publish.Denied) and the connection closes

Invariants:
- A connection connects once and publishes at most one stream, as every encoder
  does; a publish before connect, or a second connect, is a protocol error.
- Policy (who may publish which key) lives in the `Admission`; this module only
  speaks RTMP. Every admitted session is released to it exactly once, when it ends.
- Stream keys are passwords: logs get `redact(key)` only.
- A command is decoded within the AMF0 limits of `IngestLimits` whether or not its
  sender is authenticated yet; over them, the connection is closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from media.rtmp import amf0
from media.rtmp.errors import ProtocolError
from media.rtmp.limits import IngestLimits
from media.rtmp.message import Message, MessageType
from media.rtmp.peer import Peer
from media.rtmp.session import IngestSession
from media.rtmp.writer import MessageWriter

__all__ = ["Admission", "CommandHandler", "Refusal", "redact"]

log = logging.getLogger(__name__)

_WINDOW_ACK_SIZE = 2_500_000
_USER_STREAM_BEGIN = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a publish was refused, as the onStatus the publisher receives."""

    code: str  # NetStream.Publish.BadName | .Denied | .Failed
    description: str


class Admission(Protocol):
    """The server's side of a publish: routing by key, authorization, the registry."""

    async def admit(self, app: str, stream_key: str, peer: Peer) -> IngestSession | Refusal: ...

    def release(self, session: IngestSession) -> None: ...


def redact(stream_key: str) -> str:
    """A stream key is a password: logs get its first characters only."""
    return f"{stream_key[:4]}…" if len(stream_key) > 8 else "…"


class CommandHandler:
    """One connection's command dialogue: its app, its publish and the session it made."""

    def __init__(
        self,
        out: MessageWriter,
        admission: Admission,
        peer: Peer,
        limits: IngestLimits,
        chunk_size: int,
    ) -> None:
        self._out = out
        self._admission = admission
        self._peer = peer
        self._limits = limits
        self._chunk_size = chunk_size  # for what the server sends, from connect on
        self._app: str | None = None
        self._next_stream_id = 0
        self.session: IngestSession | None = None  # while a publish is live
        self._publish_stream_id = 0  # the NetStream of that publish, for its statuses
        self.published = False  # one publish per connection
        self.closing = False  # set once we decided to hang up

    async def handle(self, message: Message) -> None:
        """A command message (AMF0, or AMF3-typed with AMF0 inside)."""
        amf3 = message.type_id == MessageType.COMMAND_AMF3
        values = amf0.decode_all(
            message.payload[1:] if amf3 else message.payload,
            max_values=self._limits.amf0_max_values,
            max_depth=self._limits.amf0_max_depth,
        )
        if not values or not isinstance(values[0], str):
            raise ProtocolError("command without a name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[2:]
        if name == "connect":
            self._on_connect(txn, args[0] if args and isinstance(args[0], dict) else {})
        elif name in ("releaseStream", "FCPublish"):
            self._out.command("_result", txn, None)
        elif name == "createStream":
            self._next_stream_id += 1
            self._out.command("_result", txn, None, float(self._next_stream_id))
        elif name == "publish":
            await self._on_publish(message.stream_id, args)
        elif name in ("FCUnpublish", "closeStream", "deleteStream"):
            self.end_session("unpublished")
        elif name in ("play", "play2"):
            self._on_play(message.stream_id)
        else:
            log.debug("rtmp %s: ignoring command %r", self._peer, name)
        await self._out.drain()

    def end_session(self, reason: str) -> None:
        """End the live publish, if any, and release it to the `Admission`."""
        session, self.session = self.session, None
        if session is not None:
            session.end(reason)
            self._admission.release(session)
            log.info("rtmp %s: stream %s ended (%s)", self._peer, session.stream_id, reason)

    def hang_up(self, reason: str, description: str) -> None:
        """The server ends the live publish: its session ends with `reason` (readers
        drain what they buffered, then EOF), the publisher is told why at level error
        (encoders stop on it, ffmpeg with "Server error"), and the connection closes."""
        if self.closing:
            return
        if self.session is not None:
            self._out.status(
                self._publish_stream_id, "error", "NetStream.Publish.Denied", description
            )
        self.end_session(reason)
        self.closing = True

    def _on_connect(self, txn: float, command: dict[str, Any]) -> None:
        if self._app is not None:
            raise ProtocolError("connect sent twice")
        app = command.get("app")
        self._app = app.strip("/") if isinstance(app, str) else ""
        self._out.control(MessageType.WINDOW_ACK_SIZE, _WINDOW_ACK_SIZE.to_bytes(4, "big"))
        # Limit type 2 (dynamic): the publisher keeps its own window.
        self._out.control(
            MessageType.SET_PEER_BANDWIDTH, _WINDOW_ACK_SIZE.to_bytes(4, "big") + b"\x02"
        )
        self._out.set_chunk_size(self._chunk_size)
        self._out.command(
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
            self.session = result
            self._publish_stream_id = stream_id
            self._out.control(
                MessageType.USER_CONTROL,
                _USER_STREAM_BEGIN.to_bytes(2, "big") + stream_id.to_bytes(4, "big"),
            )
            self._out.status(
                stream_id, "status", "NetStream.Publish.Start", f"{key} is now published"
            )
        else:
            self._refuse(stream_id, key, result)

    def _on_play(self, stream_id: int) -> None:
        """An ingest serves no players: say so, then hang up."""
        self._out.status(
            stream_id, "error", "NetStream.Play.Failed", "this server only accepts publishing"
        )
        self.closing = True

    async def _admit(self, app: str, key: str) -> IngestSession | Refusal:
        """The session for a publish of `key`, or why not (one publish per connection)."""
        if self.published:
            return Refusal("NetStream.Publish.BadName", "this connection already published")
        if not key:
            return Refusal("NetStream.Publish.BadName", "no stream key")
        self.published = True
        return await self._admission.admit(app, key, self._peer)

    def _refuse(self, stream_id: int, key: str, refusal: Refusal) -> None:
        """Tell the publisher why, then hang up."""
        log.info(
            "rtmp %s: publish of %s refused: %s (%s)",
            self._peer,
            redact(key),
            refusal.code,
            refusal.description,
        )
        self._out.status(stream_id, "error", refusal.code, refusal.description)
        self.closing = True
