"""The RTMP server hangs up on a publisher whose stream is over (`RtmpIngestServer.hang_up`):
a hand-made client sees why and the connection close, a real ffmpeg stops publishing,
and what arrived before the hang-up still reaches the readers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from media.rtmp import FlvReader, IngestSession, RtmpIngestServer, amf0
from media.rtmp.chunk import MessageType
from tests.utils.rtmp import RawRtmp

KEY = "hangup-key-0123456789"
STREAM = "stream-1"
SEQUENCE_HEADER = b"\x17\x00\x00\x00\x00" + b"avcC-of-the-test"
KEYFRAME = b"\x17\x01\x00\x00\x00" + b"keyframe-payload-" * 64


class Ingest:
    """A server that knows one key, with a reader opened on each session as it starts."""

    def __init__(self) -> None:
        self.server = RtmpIngestServer("127.0.0.1", 0, self._authorize, self._on_session)
        self.sessions: list[IngestSession] = []
        self.readers: list[FlvReader] = []

    async def _authorize(self, app: str, key: str) -> str | None:
        return STREAM if key == KEY else None

    def _on_session(self, session: IngestSession) -> None:
        self.sessions.append(session)
        self.readers.append(session.reader())


@pytest.fixture
async def ingest() -> Any:
    ingest = Ingest()
    await ingest.server.start()
    try:
        yield ingest
    finally:
        await ingest.server.stop()


async def until(check: Any, what: str, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


async def statuses_until_closed(client: RawRtmp, timeout_s: float) -> list[dict[str, Any]]:
    """The onStatus infos the server sends until it closes the connection."""
    infos = []
    async with asyncio.timeout(timeout_s):
        while data := await client.reader.read(65536):
            for message in client._incoming.feed(data):  # noqa: SLF001 - its chunk state
                if message.type_id == MessageType.COMMAND_AMF0:
                    values = amf0.decode_all(message.payload)
                    if values[0] == "onStatus":
                        infos.append(values[3])
    return infos


def read_all(reader: FlvReader) -> bytes:
    """Everything a reader gets, to its EOF (in a worker thread: it blocks)."""
    out = bytearray()
    while data := reader.read(65536):
        out += data
    return bytes(out)


async def test_hang_up_closes_the_connection_after_what_arrived_is_read(ingest: Ingest):
    client = await RawRtmp.open(ingest.server.port)
    assert (await client.publish(KEY))["code"] == "NetStream.Publish.Start"
    client.send(MessageType.VIDEO, SEQUENCE_HEADER, csid=6, stream_id=1)
    client.send(MessageType.VIDEO, KEYFRAME, csid=6, stream_id=1)
    await client.writer.drain()
    [session] = ingest.sessions
    await until(lambda: session.stats.video_frames == 1, "the keyframe arrived")

    began = time.monotonic()
    assert ingest.server.hang_up(STREAM, "policy_violation")
    infos = await statuses_until_closed(client, timeout_s=1.0)
    closed_after = time.monotonic() - began
    await client.close()

    assert closed_after < 1.0
    assert [(i["level"], i["code"]) for i in infos] == [("error", "NetStream.Publish.Denied")]
    assert "policy_violation" in infos[0]["description"]
    assert session.end_reason == "policy_violation"
    flv = await asyncio.to_thread(read_all, ingest.readers[0])  # drains, then EOF
    assert SEQUENCE_HEADER in flv and KEYFRAME in flv
    await until(lambda: ingest.server.connections == 0, "the connection is gone", 1.0)
    assert STREAM not in ingest.server.sessions
    assert not ingest.server.hang_up(STREAM, "policy_violation")  # nobody left to hang up on

    again = await RawRtmp.open(ingest.server.port)  # its key is free again
    try:
        assert (await again.publish(KEY))["code"] == "NetStream.Publish.Start"
    finally:
        await again.close()


async def test_hang_up_of_a_stream_nobody_publishes_does_nothing(ingest: Ingest):
    client = await RawRtmp.open(ingest.server.port)
    try:
        assert (await client.publish(KEY))["code"] == "NetStream.Publish.Start"
        assert not ingest.server.hang_up("another-stream", "stream_ended")
        assert not await client.closed_by_server(0.3)
        assert ingest.server.connections == 1 and not ingest.sessions[0].closed
    finally:
        await client.close()


async def test_ffmpeg_stops_publishing_when_hung_up(ingest: Ingest):
    ffmpeg = await asyncio.create_subprocess_exec(
        *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"),
        *("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"),  # endless
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "flv"),
        f"rtmp://127.0.0.1:{ingest.server.port}/live/{KEY}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until(lambda: bool(ingest.sessions), "ffmpeg publishing", 20.0)
        session = ingest.sessions[0]
        await until(lambda: session.stats.keyframes >= 2, "two GOPs", 20.0)
        reading = asyncio.create_task(asyncio.to_thread(read_all, ingest.readers[0]))

        began = time.monotonic()
        assert ingest.server.hang_up(STREAM, "stream_ended")
        async with asyncio.timeout(5.0):
            _, stderr = await ffmpeg.communicate()
        exited_after = time.monotonic() - began
        flv = await reading
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()

    assert ffmpeg.returncode != 0 and exited_after < 5.0
    assert "the stream has ended (stream_ended)" in stderr.decode(errors="replace")
    assert session.end_reason == "stream_ended"
    assert flv.startswith(b"FLV") and len(flv) > 1000  # what it published, then EOF
    await until(lambda: ingest.server.connections == 0, "the connection is gone", 1.0)
