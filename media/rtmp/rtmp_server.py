"""The RTMP ingest: one TCP port for every stream, routed by stream key.

A publisher connects to rtmp://HOST:PORT/APP and publishes KEY. The server asks
`authorize(app, key)` for a stream id (None refuses), makes an `IngestSession`,
awaits `on_session(session)` and only then tells the publisher to start, so a
reader opened in `on_session` gets the stream from its first byte.

Invariants: at most one live publish per stream key and per stream id (a
second is refused with NetStream.Publish.BadName while the first lasts); a
key is free again the moment its publisher disconnects or unpublishes; stream
keys never appear in logs or in `sessions` (they are passwords).

`hang_up(stream_id, reason)` ends a live publish from our side (its stream is
over): the session ends with that reason, so its readers drain what they
buffered and read EOF, the publisher gets an error onStatus and the connection
closes (with it the publisher's slot in the connection caps). A caller that must
not lose what the publisher sent stops taking its bytes and drains first.

Abuse is bounded by `IngestLimits` (see `media.rtmp.limits`): connections over
the total or per-address cap are closed on accept, before the handshake; an
address refused too many unknown keys is refused without asking `authorize`
until its block ends (other addresses publish as usual). Each is logged once:
an address over its cap is logged again only after it was under it.

Plain asyncio, no Ray: the stream actor runs it in its event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from math import ceil
from types import MappingProxyType

from media.rtmp.commands import Refusal, redact
from media.rtmp.connection import PublisherConnection
from media.rtmp.limits import IngestLimits
from media.rtmp.peer import Peer
from media.rtmp.session import IngestSession, SessionStats
from media.rtmp.throttle import RefusalThrottle

__all__ = ["DEFAULT_PORT", "Authorize", "OnSession", "RtmpIngestServer"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 1935

Authorize = Callable[[str, str], Awaitable[str | None]]
"""(app, stream key) → the stream id to publish to, or None to refuse."""

OnSession = Callable[[IngestSession], Awaitable[None] | None]
"""Called with each accepted publish before media flows; open readers here."""


class RtmpIngestServer:
    def __init__(
        self,
        host: str,
        port: int,
        authorize: Authorize,
        on_session: OnSession,
        *,
        limits: IngestLimits | None = None,
        reader_buffer_bytes: int = 64 << 20,
        gop_cache_bytes: int = 16 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`port` 0 picks a free port (see `.port` after `start()`).

        limits: what peers may do (`IngestLimits()`'s defaults when None).
        reader_buffer_bytes: how far one reader may fall behind before it is cut off.
        gop_cache_bytes: the current GOP kept for readers that join late (0: none).
        clock: monotonic seconds, for blocking addresses that guess keys.
        """
        self._host = host
        self._port = port
        self._authorize = authorize
        self._on_session = on_session
        self._limits = limits = limits or IngestLimits()
        self._reader_buffer_bytes = reader_buffer_bytes
        self._gop_cache_bytes = gop_cache_bytes
        self._throttle = RefusalThrottle(
            limits.refused_keys_per_ip,
            limits.refused_keys_window_s,
            limits.refused_keys_block_s,
            clock=clock,
        )
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], PublisherConnection] = {}
        self._per_client: dict[str, int] = {}  # open connections by `Peer.client`
        self._over_cap: set[str] = set()  # clients ("*": all) logged as over a cap
        self._claimed_keys: set[str] = set()  # publishing, or being authorized
        self._by_stream: dict[str, IngestSession] = {}

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Open connections, publishing or not."""
        return len(self._connections)

    @property
    def sessions(self) -> Mapping[str, IngestSession]:
        """Live sessions by stream id (read-only view)."""
        return MappingProxyType(self._by_stream)

    def stats(self) -> dict[str, SessionStats]:
        """A snapshot of every live session's counters, by stream id."""
        return {stream_id: s.stats for stream_id, s in self._by_stream.items()}

    def hang_up(self, stream_id: str, reason: str, description: str = "") -> bool:
        """End the stream's live publish and close its publisher's connection (see the
        module docstring); `description` is what the publisher is told (default: the
        stream has ended). False if no publisher is sending to the stream (none, or
        one still being admitted)."""
        session = self._by_stream.get(stream_id)
        if session is None:
            return False
        for connection in self._connections.values():
            if connection.session is session:
                connection.hang_up(reason, description or f"the stream has ended ({reason})")
                return True
        return False

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("rtmp ingest listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and end every connection; every session ends with
        reason "server_stopped" and its readers get EOF."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> RtmpIngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = Peer.of(writer)
        if not self._accept(peer):
            writer.transport.abort()  # before the handshake: costs nothing more
            return
        client = peer.client
        connection = PublisherConnection(reader, writer, self, self._limits, peer)
        self._connections[task] = connection
        self._per_client[client] = self._per_client.get(client, 0) + 1
        try:
            await connection.run()
        except asyncio.CancelledError:
            # stop() cancels connections; this task is their top level, and asyncio's
            # stream callback would log a task that ends cancelled as an error.
            pass
        except Exception:
            log.exception("rtmp connection failed")
        finally:
            del self._connections[task]
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]
            self._over_cap.discard(client)
            self._over_cap.discard("*")

    def _accept(self, peer: Peer) -> bool:
        """Whether a new connection fits the caps; logs the first one that does not."""
        limits, client = self._limits, peer.client
        if len(self._connections) >= limits.max_connections:
            over, why = "*", f"{limits.max_connections} connections are open"
        elif 0 < limits.max_connections_per_ip <= self._per_client.get(client, 0):
            over, why = client, f"{limits.max_connections_per_ip} connections from {client}"
        else:
            return True
        if over not in self._over_cap:
            self._over_cap.add(over)
            log.warning("rtmp %s: connection refused: %s (logged once)", peer, why)
        return False

    # -- Admission, for the connections ---------------------------------------

    async def admit(self, app: str, stream_key: str, peer: Peer) -> IngestSession | Refusal:
        """Route a publish by its key: refuse a busy or unknown key, else start a session."""
        wait = self._throttle.blocked_for(peer.client)
        if wait > 0:
            return Refusal(
                "NetStream.Publish.Denied",
                f"too many unknown stream keys from this address: try again in {ceil(wait)} s",
            )
        if stream_key in self._claimed_keys:
            return Refusal("NetStream.Publish.BadName", "this stream key is already publishing")
        self._claimed_keys.add(stream_key)
        result: IngestSession | Refusal | None = None
        try:
            result = await self._start_session(app, stream_key, peer)
            return result
        finally:
            if not isinstance(result, IngestSession):  # refused, failed or cancelled
                self._claimed_keys.discard(stream_key)

    async def _start_session(
        self, app: str, stream_key: str, peer: Peer
    ) -> IngestSession | Refusal:
        stream_id = await self._stream_for(app, stream_key, peer)
        if isinstance(stream_id, Refusal):
            return stream_id
        if stream_id in self._by_stream:
            return Refusal("NetStream.Publish.BadName", "this stream is already live")
        session = IngestSession(
            stream_id=stream_id,
            stream_key=stream_key,
            app=app,
            peer=str(peer),
            reader_buffer_bytes=self._reader_buffer_bytes,
            gop_cache_bytes=self._gop_cache_bytes,
        )
        self._by_stream[stream_id] = session
        refusal = await self._announce(session)
        if refusal is not None:
            return refusal
        log.info(
            "rtmp %s: stream %s publishing (app %r, key %s)",
            peer,
            stream_id,
            app,
            redact(stream_key),
        )
        return session

    async def _stream_for(self, app: str, stream_key: str, peer: Peer) -> str | Refusal:
        """The stream a key publishes to, as `authorize` says (in time, without failing);
        an unknown key counts against the peer's address."""
        try:
            async with asyncio.timeout(self._limits.authorize_timeout_s):
                stream_id = await self._authorize(app, stream_key)
        except TimeoutError:
            log.warning("rtmp %s: authorizing %s timed out", peer, redact(stream_key))
            return Refusal("NetStream.Publish.Denied", "authorization timed out")
        except Exception:
            log.exception("rtmp %s: authorizing %s failed", peer, redact(stream_key))
            return Refusal("NetStream.Publish.Denied", "authorization failed")
        if stream_id is None:
            if self._throttle.refused(peer.client):
                log.warning(
                    "rtmp %s: %d unknown stream keys from %s within %g s: refusing it for %g s",
                    peer,
                    self._limits.refused_keys_per_ip,
                    peer.client,
                    self._limits.refused_keys_window_s,
                    self._limits.refused_keys_block_s,
                )
            return Refusal("NetStream.Publish.Denied", "unknown stream key")
        return str(stream_id)  # whatever the authorizer returned, keys are strings

    async def _announce(self, session: IngestSession) -> Refusal | None:
        """Run `on_session`; if it fails, the session ends before any media flows."""
        try:
            result = self._on_session(session)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "rtmp %s: on_session failed for stream %s", session.peer, session.stream_id
            )
            session.end("rejected")
            self._forget(session)
            return Refusal("NetStream.Publish.Failed", "the stream could not be started")
        except BaseException:
            session.end("server_stopped")
            self._forget(session)
            raise
        return None

    def release(self, session: IngestSession) -> None:
        """The publish ended: free its key and stream id for the next publish."""
        self._forget(session)
        self._claimed_keys.discard(session.stream_key)

    def _forget(self, session: IngestSession) -> None:
        if self._by_stream.get(session.stream_id) is session:
            del self._by_stream[session.stream_id]
