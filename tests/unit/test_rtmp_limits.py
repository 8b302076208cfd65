"""The RTMP ingest's limits on hand-made bytes: the chunk reader, the AMF0 decoder,
the refused-key throttle (on an injected clock) and the addresses limits count."""

from __future__ import annotations

import dataclasses
import time

import pytest

from actors.ingest_actor import rtmp_limits
from lumalive.settings import Settings
from media.rtmp import IngestLimits, LimitExceededError, ProtocolError, amf0
from media.rtmp.chunk import ChunkReader, ChunkWriter, Message, MessageType
from media.rtmp.peer import Peer
from media.rtmp.throttle import RefusalThrottle

SETUP = IngestLimits()  # the defaults: 64 KiB messages, 1 MiB unfinished, 64 KiB chunks


def setup_reader() -> ChunkReader:
    """A reader as a connection makes it before the publish is admitted."""
    return ChunkReader(
        max_message_bytes=SETUP.setup_message_bytes,
        max_pending_bytes=SETUP.setup_pending_bytes,
        max_chunk_size=SETUP.max_chunk_size,
    )


def header(csid: int, length: int, type_id: int = MessageType.COMMAND_AMF0) -> bytes:
    """A type-0 chunk header starting a message of `length` bytes (no payload)."""
    return bytes((csid,)) + bytes(3) + length.to_bytes(3, "big") + bytes((type_id,)) + bytes(4)


def set_chunk_size(size: int) -> bytes:
    return header(2, 4, MessageType.SET_CHUNK_SIZE) + size.to_bytes(4, "big")


# -- chunk reader ----------------------------------------------------------------


def test_a_message_over_the_setup_size_is_refused_on_its_header():
    reader = setup_reader()
    body = b"x" * SETUP.setup_message_bytes
    assert reader.feed(ChunkWriter().encode(20, body, chunk_stream_id=3)) == [
        Message(20, 0, 0, body)
    ]  # exactly at the limit: fine
    with pytest.raises(LimitExceededError, match="over the limit"):
        reader.feed(header(3, SETUP.setup_message_bytes + 1))  # no payload needed


def test_unfinished_messages_over_the_pending_cap_are_refused():
    reader = setup_reader()
    length = 60 << 10
    fits = SETUP.setup_pending_bytes // length  # 17 unfinished 60 KiB messages fit
    for csid in range(3, 3 + fits):
        assert reader.feed(header(csid, length) + bytes(128)) == []
    with pytest.raises(LimitExceededError, match="unfinished messages"):
        reader.feed(header(3 + fits, length))


def test_finished_and_abandoned_messages_free_the_pending_cap():
    reader, writer = setup_reader(), ChunkWriter()
    body = bytes(60 << 10)
    for _ in range(40):  # 2.4 MiB in all, never more than 60 KiB unfinished
        assert len(reader.feed(writer.encode(9, body, chunk_stream_id=6))) == 1
    for _ in range(40):  # a new header on a chunk stream abandons its message
        assert reader.feed(header(4, len(body)) + bytes(128)) == []


def test_set_chunk_size_over_the_max_is_refused():
    reader = setup_reader()
    reader.feed(set_chunk_size(SETUP.max_chunk_size))
    assert reader.chunk_size == SETUP.max_chunk_size
    with pytest.raises(LimitExceededError, match="chunk size"):
        reader.feed(set_chunk_size(SETUP.max_chunk_size + 1))
    with pytest.raises(LimitExceededError):
        setup_reader().feed(set_chunk_size(16 << 20))


def test_too_many_chunk_stream_ids_are_refused():
    reader = ChunkReader(max_chunk_streams=64)
    data = b"".join(bytes((0, csid)) + bytes(11) for csid in range(64))  # ids 64..127
    reader.feed(data)  # empty type-0 messages: each completes at once
    with pytest.raises(LimitExceededError, match="chunk streams"):
        reader.feed(bytes((0, 200)) + bytes(11))


def test_limits_raised_after_a_message_apply_to_the_chunks_after_it():
    """As after an admitted publish: the command and the first big frame arrive in
    one read, and the frame is held to the media limits, not the setup ones."""
    writer, reader = ChunkWriter(), setup_reader()
    frame = bytes(200 << 10)
    data = writer.encode(20, amf0.encode("publish", 4.0, None, "key"), chunk_stream_id=3)
    data += writer.encode(9, frame, chunk_stream_id=6, stream_id=1)
    reader.receive(data)
    messages = reader.messages()
    assert next(messages).type_id == MessageType.COMMAND_AMF0
    reader.max_message_bytes, reader.max_pending_bytes = 16 << 20, 64 << 20
    assert next(messages).payload == frame
    # The same bytes without the raise are refused.
    with pytest.raises(LimitExceededError):
        setup_reader().feed(data)


# -- AMF0 -------------------------------------------------------------------------


def test_amf0_refuses_more_values_than_the_limit_quickly():
    nulls = b"\x05" * (16 << 20)  # the audit's 16 MiB command of NULL markers
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="too many AMF0 values"):
        amf0.decode_all(nulls, max_values=SETUP.amf0_max_values)
    assert time.perf_counter() - start < 0.5  # ~1 ms: 1,024 values, not 16 million
    # Nested values count too: one object with 2,000 properties.
    many = {f"k{i}": None for i in range(2000)}
    with pytest.raises(LimitExceededError):
        amf0.decode_all(amf0.encode("connect", 1.0, many), max_values=1024)
    assert amf0.decode_all(amf0.encode("connect", 1.0, many))[2] == many  # default: 65,536


def test_amf0_refuses_deep_nesting_without_recursing_into_it():
    deep = b"\x0a\x00\x00\x00\x01" * 100_000 + b"\x05"  # arrays in arrays, 100,000 deep
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="nested more than 8"):
        amf0.decode_all(deep, max_depth=8)
    with pytest.raises(LimitExceededError):
        amf0.decode_all(deep)  # the default depth (32) as well, not a RecursionError
    assert time.perf_counter() - start < 0.5
    assert amf0.decode_all(b"\x0a\x00\x00\x00\x01" * 8 + b"\x05", max_depth=8) == [
        [[[[[[[[None]]]]]]]]
    ]


def test_a_connect_command_fits_the_command_limits():
    connect = amf0.encode(
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": "rtmp://h/live",
            "tcUrl": "rtmp://h/live",
            "fourCcList": ["av01", "vp09", "hvc1"],
        },
    )
    values = amf0.decode_all(
        connect, max_values=SETUP.amf0_max_values, max_depth=SETUP.amf0_max_depth
    )
    assert values[2]["fourCcList"] == ["av01", "vp09", "hvc1"]
    with pytest.raises(ProtocolError):  # a limit error is a protocol error
        amf0.decode_all(connect, max_values=5)


# -- refused keys ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_an_address_after_n_refusals_in_the_window():
    clock = Clock()
    throttle = RefusalThrottle(3, window_s=60, block_s=30, clock=clock)
    assert [throttle.refused("10.0.0.1") for _ in range(3)] == [False, False, True]
    assert throttle.blocked_for("10.0.0.1") == 30
    assert throttle.blocked_for("10.0.0.2") == 0  # other addresses are not affected
    clock.now += 29.5
    assert throttle.blocked_for("10.0.0.1") == 0.5
    clock.now += 0.5
    assert throttle.blocked_for("10.0.0.1") == 0  # over; the count starts again
    assert [throttle.refused("10.0.0.1") for _ in range(3)] == [False, False, True]


def test_throttle_forgets_refusals_older_than_the_window():
    clock = Clock()
    throttle = RefusalThrottle(3, window_s=60, block_s=30, clock=clock)
    for _ in range(10):
        assert not throttle.refused("10.0.0.1")
        clock.now += 31  # two refusals per minute at most: never three in the window
    assert throttle.blocked_for("10.0.0.1") == 0


def test_throttle_off_and_bounded():
    assert not any(RefusalThrottle(0, 60, 60).refused("a") for _ in range(100))
    throttle = RefusalThrottle(2, 60, 60, clock=Clock(), max_tracked=100)
    for i in range(10_000):
        throttle.refused(f"10.{i >> 8}.{i & 255}.1")
    assert len(throttle._refusals) <= 100


# -- addresses and settings --------------------------------------------------------


def test_limits_count_an_ipv4_address_or_an_ipv6_64():
    assert Peer("203.0.113.7", 5000).client == "203.0.113.7"
    assert Peer("::ffff:203.0.113.7", 5000).client == "203.0.113.7"
    assert Peer("2001:db8:1:2:aaaa::1", 5000).client == "2001:db8:1:2::/64"
    assert Peer("2001:db8:1:2:bbbb::9", 6000).client == "2001:db8:1:2::/64"
    assert str(Peer("::1", 5000)) == "[::1]:5000" and str(Peer("127.0.0.1", 1)) == "127.0.0.1:1"


def test_settings_reach_every_limit_they_name():
    fields = [
        f for f in dataclasses.fields(IngestLimits) if f"rtmp_{f.name}" in Settings.model_fields
    ]
    assert len(fields) == 14  # all but authorize_timeout_s
    changed = {
        f"rtmp_{f.name}": (f.default * 2 if f.name != "amf0_max_depth" else 16) for f in fields
    }
    limits = rtmp_limits(Settings(**changed))  # type: ignore[arg-type]
    assert {f"rtmp_{f.name}": getattr(limits, f.name) for f in fields} == changed


def test_limits_refuse_setup_limits_over_media_ones():
    with pytest.raises(ValueError):
        IngestLimits(setup_message_bytes=32 << 20)
    with pytest.raises(ValueError):
        IngestLimits(amf0_max_depth=1000)
