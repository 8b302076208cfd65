"""The RTMP ingest under abuse, before anyone authenticated: the real server in this
process, attackers as hand-made clients (the flood in its own process, so that
only the server's memory is measured here) and a real ffmpeg publisher beside them.

Other addresses are other 127.x.y.z sources: Linux routes all of 127/8 to lo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import pytest

from media.rtmp import IngestLimits, IngestSession, RtmpIngestServer
from tests.utils.rtmp import ROOT, RawRtmp, ffmpeg_publish, finished

KEY = "key-alpha-0001-secret"
MiB = 1 << 20


@dataclass
class Keys:
    """An `authorize` that knows one key, and counts how often it was asked."""

    asked: int = 0
    sessions: list[IngestSession] = field(default_factory=list)

    async def authorize(self, app: str, key: str) -> str | None:
        self.asked += 1
        return "stream-a" if key == KEY and app == "live" else None

    def on_session(self, session: IngestSession) -> None:
        self.sessions.append(session)
        session.reader().close()  # nobody reads here: nothing need be buffered


@asynccontextmanager
async def serving(limits: IngestLimits, **kwargs: object) -> AsyncIterator[RtmpIngestServer]:
    keys = Keys()
    server = RtmpIngestServer(
        "127.0.0.1", 0, keys.authorize, keys.on_session, limits=limits, **kwargs
    )
    server.keys = keys  # type: ignore[attr-defined]
    async with server:
        yield server


def rss_bytes() -> int:
    """This process's resident memory now (/proc/self/statm: pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Samples RSS every 5 ms in a thread (the event loop may be busy): [baseline, peak]."""
    seen = [rss_bytes(), rss_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            seen[1] = max(seen[1], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()
        seen[1] = max(seen[1], rss_bytes())


async def slowest_handshake(port: int, source: str, until: asyncio.Future[object]) -> float:
    """Seconds the slowest of fresh handshakes from `source` took to be answered, one
    after another until `until` is done: what the event loop's latency was meanwhile."""
    slowest = 0.0
    while not until.done():
        client = await RawRtmp.open(port, source=source)
        start = time.perf_counter()
        try:
            await client.handshake()
            slowest = max(slowest, time.perf_counter() - start)
        finally:
            await client.close()
        await asyncio.sleep(0.05)
    return slowest


async def test_big_unfinished_messages_before_publish_are_cut_off_in_bounded_memory(caplog):
    """16 connections (the default cap per address) each try to park 60 MiB before
    publishing: chunks of 16 MiB, 16 MiB commands of NULLs, many 60 KiB messages."""
    caplog.set_level(logging.WARNING, "media.rtmp")
    async with serving(IngestLimits()) as server:
        with peak_rss() as rss:
            flood = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.utils.rtmp",
                str(server.port),
                "16",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(30):
                outcome = asyncio.ensure_future(flood.communicate())
                during = await slowest_handshake(server.port, "127.0.0.2", outcome)
                out, _ = await outcome
            start = time.perf_counter()
            while server.connections and time.perf_counter() - start < 5:
                await asyncio.sleep(0.05)
    results = json.loads(out)
    growth = rss[1] - rss[0]
    print(f"RSS {rss[0] / MiB:.0f} MiB -> peak {rss[1] / MiB:.0f} MiB; handshake {during:.3f} s")
    assert flood.returncode == 0 and len(results) == 16
    assert all(r["closed"] for r in results), results
    # What got into the socket before the server hung up: kernel buffers at most.
    assert max(r["sent"] for r in results) < 20 * MiB, results
    assert growth < 64 * MiB
    assert during < 2.0  # nothing decodes a 16 MiB command on the event loop
    assert server.connections == 0
    closed = [r for r in caplog.records if "closed:" in r.getMessage()]
    assert len(closed) == 16  # one line each


async def test_a_huge_command_is_refused_on_its_header():
    async with serving(IngestLimits()) as server:
        client = await RawRtmp.open(server.port)
        await client.handshake()
        client.writer.write(  # a 16 MiB AMF0 command's first chunk; the rest never comes
            bytes((3,)) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + b"\x14" + bytes(4) + b"\x05"
        )
        start = time.perf_counter()
        assert await client.closed_by_server(5)
        refused_in = time.perf_counter() - start
        await client.close()
    print(f"a 16 MiB command refused {refused_in * 1000:.1f} ms after its header")
    assert refused_in < 1.0


async def test_connections_are_capped_in_all_and_per_address(caplog):
    caplog.set_level(logging.WARNING, "media.rtmp")
    limits = IngestLimits(max_connections=4, max_connections_per_ip=2)

    async def answered(source: str) -> RawRtmp | None:
        """A connection that got its handshake answered, or None if it was closed."""
        client = await RawRtmp.open(server.port, source=source)
        try:
            await client.handshake()
            return client
        except (ConnectionError, asyncio.IncompleteReadError):
            await client.close()
            return None

    async with serving(limits) as server:
        first = [await answered("127.0.0.1") for _ in range(2)]
        assert all(first)
        assert await answered("127.0.0.1") is None  # a third from the same address
        assert await answered("127.0.0.1") is None  # ... logged once, not twice
        second = [await answered("127.0.0.2") for _ in range(2)]
        assert all(second)
        assert await answered("127.0.0.3") is None  # a fresh address, but 4 are open
        assert server.connections == 4

        client = first[0]
        assert client is not None
        await client.close()
        async with asyncio.timeout(5):
            while server.connections == 4:
                await asyncio.sleep(0.02)
        again = await answered("127.0.0.1")
        assert again is not None
        for open_client in [again, first[1], *second]:
            assert open_client is not None
            await open_client.close()
    refused = [r.getMessage() for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(refused) == 2, refused  # per address once, in all once
    assert "2 connections from 127.0.0.1" in refused[0] and "4 connections" in refused[1]


async def test_unknown_keys_from_one_address_are_throttled_while_others_publish(caplog):
    assert shutil.which("ffmpeg"), "the ffmpeg CLI publishes here: apt-get install ffmpeg"
    caplog.set_level(logging.INFO, "media.rtmp")
    now = [0.0]
    limits = IngestLimits(refused_keys_per_ip=3, refused_keys_window_s=60, refused_keys_block_s=30)
    async with serving(limits, clock=lambda: now[0]) as server:
        keys = server.keys  # type: ignore[attr-defined]
        guesses = [f"guess-{i:04d}-secret" for i in range(3)]
        for guess in guesses:
            client = await RawRtmp.open(server.port, source="127.0.0.2")
            assert (await client.publish(guess))["description"] == "unknown stream key"
            await client.close()
        # Blocked: even the right key is refused, and authorize is not asked.
        client = await RawRtmp.open(server.port, source="127.0.0.2")
        status = await client.publish(KEY)
        await client.close()
        assert status["code"] == "NetStream.Publish.Denied"
        assert "too many unknown stream keys" in status["description"]
        assert keys.asked == 3

        # Another address publishes for real meanwhile.
        url = f"rtmp://127.0.0.1:{server.port}/live/{KEY}"
        published = await finished(await ffmpeg_publish(url, realtime=False))
        assert published.returncode == 0, published.stderr
        assert [s.stream_id for s in keys.sessions] == ["stream-a"]

        now[0] += 30  # the block is over
        client = await RawRtmp.open(server.port, source="127.0.0.2")
        assert (await client.publish(KEY))["code"] == "NetStream.Publish.Start"
        await client.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("refusing it for 30 s" in m for m in messages) == 1
    assert not [m for m in messages for key in [KEY, *guesses] if key in m]  # keys are secrets


async def test_a_slow_loris_handshake_is_closed_at_the_setup_deadline():
    async with serving(IngestLimits(setup_timeout_s=0.5)) as server:
        client = await RawRtmp.open(server.port)
        start = time.perf_counter()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            for _ in range(1 + 1536):  # C0 C1, one byte every 20 ms: 30 s in all
                client.writer.write(b"\x03")
                await client.writer.drain()
                await asyncio.sleep(0.02)
                if client.reader.at_eof():
                    raise ConnectionError("closed")
        assert 0.4 < time.perf_counter() - start < 3
        await client.close()


async def test_a_peer_that_never_reads_is_closed_at_the_setup_deadline():
    """Pings answered to a peer that reads nothing: the answers fill the sockets, and
    the server's wait for them to drain must end at the setup deadline too; then the
    socket is dropped (a close would wait for the peer to read)."""
    async with serving(IngestLimits(setup_timeout_s=3.0)) as server:
        # Small socket buffers both ways, so that the server's writes back up soon (the
        # listener's send buffer is what the connections it accepts start with).
        listener = server._server
        assert listener is not None
        listener.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client = await RawRtmp.open(server.port, receive_buffer=4096)
        await client.handshake()
        ping = client.chunks.encode(4, (6).to_bytes(2, "big") + bytes(4), chunk_stream_id=2)
        start, stuck = time.perf_counter(), None
        with contextlib.suppress(ConnectionError):
            while server.connections and stuck is None:
                client.writer.write(ping * 1000)
                try:
                    async with asyncio.timeout(0.5):
                        await client.writer.drain()
                except TimeoutError:  # the server stopped reading: stuck writing to us
                    stuck = time.perf_counter() - start
        async with asyncio.timeout(8):
            while server.connections:
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        # Dropped (reset), not left waiting for us to read so that a close may finish.
        # Our reader holds what it buffered and pauses its transport, which then sees
        # the reset only once we read on: read to the end, which is a reset, not EOF.
        async with asyncio.timeout(8):
            with pytest.raises(ConnectionResetError):
                while await client.reader.read(1 << 16):
                    pass
        client.writer.transport.abort()
    print(f"server stuck writing after {stuck:.2f} s; connection dropped after {elapsed:.2f} s")
    assert stuck is not None and stuck < 2.5  # before the deadline: the drain is what waits
    assert 2.5 < elapsed < 8
