"""RTMP clients for the ingest tests: the real ffmpeg CLI, and a hand-made client that
sends what no encoder would (bad keys from a chosen source address, endless
unfinished messages) for the abuse tests.

`flood()` runs in its own process (`python -m tests.utils.rtmp PORT CONNECTIONS`),
so that its buffers and CPU are not counted as the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.rtmp import amf0
from media.rtmp.chunk import ChunkReader, ChunkWriter, MessageType

__all__ = [
    "HANDSHAKE_REPLY",
    "ROOT",
    "Published",
    "RawRtmp",
    "ffmpeg_publish",
    "finished",
    "flood",
]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60
HANDSHAKE_REPLY = 1 + 2 * 1536  # S0 S1 S2


@dataclass
class Published:
    returncode: int
    stderr: str


async def ffmpeg_publish(
    url: str, *, realtime: bool = True, loops: int = 0
) -> asyncio.subprocess.Process:
    """The sample clip, copied; `loops` plays it that many extra times (a longer, still
    finite publish)."""
    from models.train_superres import default_media_path  # PyAV: not for the flood

    pace = ["-re"] if realtime else []
    loop = ["-stream_loop", str(loops)] if loops else []
    return await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *pace,
        *loop,
        "-i",
        str(default_media_path()),
        "-c",
        "copy",
        "-f",
        "flv",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def ffmpeg_live(url: str, seconds: int, *x264: str) -> asyncio.subprocess.Process:
    """A live encoder publishing in real time: a 320x240 25 fps test pattern, a keyframe
    every second, and a 440 Hz AAC tone, for `seconds`; `x264` adds the H.264 options
    that set one test's encoder apart (preset, profile). The WHEP tests share it."""
    return await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"),
        *("-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
        *("-c:v", "libx264", *x264, "-tune", "zerolatency", "-g", "25"),
        *("-c:a", "aac", "-f", "flv", url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def finished(process: asyncio.subprocess.Process) -> Published:
    async with asyncio.timeout(TIMEOUT_S):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return Published(process.returncode, stderr.decode(errors="replace"))


class RawRtmp:
    """One hand-made RTMP connection to the server on 127.0.0.1:`port`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunks = ChunkWriter()
        self._incoming = ChunkReader()

    @classmethod
    async def open(
        cls, port: int, *, source: str = "127.0.0.1", receive_buffer: int | None = None
    ) -> RawRtmp:
        """Connect from `source` (any 127.x.y.z is this host on Linux: another "IP");
        `receive_buffer` shrinks the socket's, so that what we do not read soon stops
        the server's writes."""
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def handshake(self) -> None:
        self.writer.write(b"\x03" + bytes(1536))
        reply = await self.reader.readexactly(HANDSHAKE_REPLY)
        self.writer.write(reply[1:1537])  # C2: S1 echoed
        await self.writer.drain()

    def send(self, type_id: int, payload: bytes, *, csid: int = 3, stream_id: int = 0) -> None:
        self.writer.write(
            self.chunks.encode(type_id, payload, chunk_stream_id=csid, stream_id=stream_id)
        )

    def command(self, name: str, txn: float, *values: Any, stream_id: int = 0) -> None:
        self.send(MessageType.COMMAND_AMF0, amf0.encode(name, txn, *values), stream_id=stream_id)

    async def publish(self, key: str, app: str = "live") -> dict[str, Any]:
        """Handshake, connect, createStream, publish `key`: the onStatus that answers."""
        await self.handshake()
        self.command("connect", 1.0, {"app": app, "type": "nonprivate"})
        self.command("createStream", 2.0, None)
        self.command("publish", 3.0, None, key, "live", stream_id=1)
        await self.writer.drain()
        async with asyncio.timeout(TIMEOUT_S):
            while data := await self.reader.read(65536):
                for message in self._incoming.feed(data):
                    if message.type_id != MessageType.COMMAND_AMF0:
                        continue
                    values = amf0.decode_all(message.payload)
                    if values[0] == "onStatus":
                        info: dict[str, Any] = values[3]
                        return info
        raise ConnectionError("closed without an onStatus")

    async def closed_by_server(self, timeout_s: float) -> bool:
        """Whether the server closes the connection within `timeout_s` (what it sent
        meanwhile is read and dropped)."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# -- the flood: big unfinished messages before any publish --------------------------

_GOAL = 60 << 20  # what each connection tries to make the server hold
_BLOCK = 64 << 10


def _set_chunk_size(size: int) -> bytes:
    return ChunkWriter().encode(
        MessageType.SET_CHUNK_SIZE, size.to_bytes(4, "big"), chunk_stream_id=2
    )


def _type0(csid: int, length: int, type_id: int) -> bytes:
    """A type-0 chunk header on a one-byte (2..63) or two-byte (64..319) chunk stream id."""
    basic = bytes((csid,)) if csid < 64 else bytes((0, csid - 64))
    return basic + bytes(3) + length.to_bytes(3, "big") + bytes((type_id,)) + bytes(4)


def _flood_bytes(shape: int) -> Iterator[bytes]:
    """What one connection sends after its handshake, made as it goes (so that this
    process stays small): three shapes of trying to park 60 MiB in the server."""
    block = bytes(_BLOCK)
    if shape == 0:
        # Chunks of 16 MiB, and four 16 MiB messages left unfinished.
        yield _set_chunk_size(16 << 20)
        for csid in range(4, 8):
            yield _type0(csid, 0xFFFFFF, MessageType.VIDEO)
            for _ in range((15 << 20) // _BLOCK):
                yield block
    elif shape == 1:
        # 16 MiB commands of NULL markers in 64 KiB chunks: each decoded on the event
        # loop once whole (the audit's ~10 s stall), then the next.
        yield _set_chunk_size(_BLOCK)
        name = amf0.encode("createStream", 2.0)
        nulls = b"\x05" * _BLOCK
        for _ in range(4):
            yield _type0(3, 0xFFFFFF, MessageType.COMMAND_AMF0) + name + nulls[len(name) :]
            for _ in range(0xFFFFFF // _BLOCK - 1):
                yield b"\xc3" + nulls
            yield b"\xc3" + nulls[: 0xFFFFFF % _BLOCK]
    else:
        # 60 KiB messages on many chunk stream ids, each sent but its last 28 KiB chunk.
        yield _set_chunk_size(32 << 10)
        length = 60 << 10
        first = bytes(32 << 10)
        for i in range(_GOAL // length):
            yield _type0(4 + i % 316, length, MessageType.VIDEO) + first


async def _flood_one(port: int, shape: int) -> dict[str, Any]:
    result: dict[str, Any] = {"shape": shape, "sent": 0, "closed": False}
    client = await RawRtmp.open(port)
    try:
        await client.handshake()
        for block in _flood_bytes(shape):
            client.writer.write(block)
            await client.writer.drain()
            result["sent"] += len(block)
        result["closed"] = await client.closed_by_server(10)
    except (ConnectionError, asyncio.IncompleteReadError):
        result["closed"] = True
    finally:
        client.writer.transport.abort()
    return result


async def flood(port: int, connections: int) -> list[dict[str, Any]]:
    """`connections` connections at once, shapes taken in turn; what became of each:
    how many bytes it got into the socket, and whether the server closed it."""
    return await asyncio.gather(*(_flood_one(port, i % 3) for i in range(connections)))


if __name__ == "__main__":
    os.chdir(ROOT)
    results = asyncio.run(flood(int(sys.argv[1]), int(sys.argv[2])))
    print(json.dumps(results))
