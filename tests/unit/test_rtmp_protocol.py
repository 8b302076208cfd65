"""RTMP protocol pieces on hand-made bytes: AMF0, chunk streams, the FLV reader."""

from __future__ import annotations

import threading

import pytest

from media.rtmp import FlvReader, IngestSession, ProtocolError, SubscriberLaggedError, amf0, flv
from media.rtmp.chunk import ChunkReader, ChunkWriter, Message, MessageType

# -- AMF0 -----------------------------------------------------------------------


def test_amf0_round_trips_a_connect_command():
    command = [
        "connect",
        1.0,
        {
            "app": "live",
            "tcUrl": "rtmp://h/live",
            "fpad": False,
            "audioCodecs": 3191.0,
            "nested": {"list": [1.0, "x", None]},
        },
    ]
    assert amf0.decode_all(amf0.encode(*command)) == command


def test_amf0_reads_an_ecma_array_and_refuses_truncation():
    ecma = b"\x08\x00\x00\x00\x01" + b"\x00\x05width" + amf0.encode(1280) + b"\x00\x00\x09"
    assert amf0.decode_all(amf0.encode("onMetaData") + ecma) == ["onMetaData", {"width": 1280.0}]
    with pytest.raises(ProtocolError):
        amf0.decode_all(ecma[:-4])


# -- chunk stream ---------------------------------------------------------------


def chunk(
    fmt: int,
    csid: int,
    *,
    ts: int = 0,
    length: int = 0,
    type_id: int = 0,
    stream_id: int = 0,
    ext: int | None = None,
    body: bytes = b"",
) -> bytes:
    """One chunk as a publisher writes it."""
    out = bytes((fmt << 6 | csid,))
    field_ = 0xFFFFFF if ext is not None else ts
    if fmt <= 2:
        out += field_.to_bytes(3, "big")
    if fmt <= 1:
        out += length.to_bytes(3, "big") + bytes((type_id,))
    if fmt == 0:
        out += stream_id.to_bytes(4, "little")
    if ext is not None:
        out += ext.to_bytes(4, "big")
    return out + body


def feed_bytewise(data: bytes) -> list[Message]:
    reader, messages = ChunkReader(), []
    for i in range(len(data)):
        messages += reader.feed(data[i : i + 1])
    return messages


def test_type3_header_starting_a_message_repeats_the_delta():
    # Two same-size audio frames 21 ms apart: ffmpeg sends the second with a
    # type-3 header. Its timestamp is 42, not 21 (pyrtmp 0.3.1 gets this wrong).
    data = (
        chunk(0, 4, ts=0, length=2, type_id=8, stream_id=1, body=b"a0")
        + chunk(1, 4, ts=21, length=2, type_id=8, body=b"a1")
        + chunk(3, 4, body=b"a2")
        + chunk(2, 4, ts=23, body=b"a3")
    )
    messages = ChunkReader().feed(data)
    assert [(m.timestamp, m.payload, m.stream_id) for m in messages] == [
        (0, b"a0", 1),
        (21, b"a1", 1),
        (42, b"a2", 1),
        (65, b"a3", 1),
    ]
    assert feed_bytewise(data) == messages


def test_extended_timestamp_is_repeated_on_continuation_chunks():
    body = bytes(range(200))
    ts = 0x01020304  # 4.7 h: past the 24-bit field
    data = chunk(0, 6, length=200, type_id=9, stream_id=1, ext=ts, body=body[:128])
    data += chunk(3, 6, ext=ts, body=body[128:])
    assert ChunkReader().feed(data) == [Message(9, ts, 1, body)]
    # ... and tolerated when an encoder leaves the repeat out.
    data = chunk(0, 6, length=200, type_id=9, stream_id=1, ext=ts, body=body[:128])
    data += chunk(3, 6, body=body[128:])
    assert ChunkReader().feed(data) == [Message(9, ts, 1, body)]


def test_interleaved_chunk_streams_and_set_chunk_size():
    video, audio = bytes(300), b"\x01" * 150
    data = chunk(0, 2, length=4, type_id=1, body=(256).to_bytes(4, "big"))  # Set Chunk Size
    data += chunk(0, 6, ts=40, length=300, type_id=9, stream_id=1, body=video[:256])
    data += chunk(0, 4, ts=41, length=150, type_id=8, stream_id=1, body=audio)
    data += chunk(3, 6, body=video[256:])
    messages = feed_bytewise(data)
    assert [(m.type_id, m.timestamp, m.payload) for m in messages[1:]] == [
        (8, 41, audio),
        (9, 40, video),
    ]


def test_writer_output_reads_back():
    writer, reader = ChunkWriter(), ChunkReader()
    writer.chunk_size = reader.chunk_size = 100
    payload = bytes(range(256)) * 3
    data = writer.encode(20, payload, chunk_stream_id=3, stream_id=1, timestamp=0x1FFFFFF)
    assert reader.feed(data) == [Message(MessageType.COMMAND_AMF0, 0x1FFFFFF, 1, payload)]


# -- FLV reader -------------------------------------------------------------------


def test_flv_reader_returns_what_is_buffered_then_eof():
    reader = FlvReader(limit=1000)
    reader.push(b"abc")
    reader.push(b"defg")
    assert reader.read(5) == b"abcde"
    assert reader.read(100) == b"fg"
    reader.finish()
    assert reader.read(100) == b""


def test_flv_reader_blocks_until_data_and_close_unblocks():
    reader = FlvReader(limit=1000)
    got: list[bytes] = []

    def read_in_thread() -> threading.Thread:
        thread = threading.Thread(target=lambda: got.append(reader.read(10)))
        thread.start()
        return thread

    thread = read_in_thread()
    reader.push(b"x")  # wakes the blocked read
    thread.join(5)
    thread = read_in_thread()
    reader.close()  # from another thread: the blocked read returns EOF
    thread.join(5)
    assert got == [b"x", b""]


def test_flv_reader_that_falls_behind_is_cut_off():
    session = IngestSession(
        stream_id="s", stream_key="k", app="live", peer="p", reader_buffer_bytes=1000
    )
    slow, other = session.reader(), session.reader()
    for i in range(10):
        session.feed_media(flv.AUDIO, i * 21, b"\xaf\x01" + bytes(200))
        assert other.read()  # keeps up, and is not disturbed by the slow one
    with pytest.raises(SubscriberLaggedError):
        slow.read(10)
    session.end("unpublished")
    assert other.read() == b""
