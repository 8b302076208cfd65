"""What one RTMP ingest lets its peers do, as one value the server is built with.

Before a connection has published with a valid key, anyone on the network may
hold it, so what it may cost is small and fixed: its commands are short, its
unfinished messages few, its AMF0 values few and shallow, and it must publish
within `setup_timeout_s` of connecting (handshake included). After the publish is
admitted, the media limits (large enough for a 4K keyframe) apply instead.

Worst-case memory before authentication is about `max_connections ×
(setup_pending_bytes + setup_message_bytes + a 64 KiB read)`, some 290 MiB with
the defaults; per address, 16 connections hold at most some 18 MiB.

A limit that is broken closes the connection at once and logs one line (never a
stream key). `Settings` holds them as `LUMALIVE_RTMP_*` (all but the authorize timeout).
"""

from __future__ import annotations

from dataclasses import dataclass

from media.rtmp.amf0 import MAX_DEPTH

__all__ = ["IngestLimits"]


@dataclass(frozen=True, slots=True)
class IngestLimits:
    # Connections, counted from accept to close whether or not they publish.
    max_connections: int = 256
    max_connections_per_ip: int = 16  # 0: no per-address limit (e.g. behind a TCP proxy)
    # Time.
    setup_timeout_s: float = 15.0  # accept → admitted publish, handshake and writes included
    idle_timeout_s: float = 30.0  # a publisher that sends nothing this long is gone
    authorize_timeout_s: float = 10.0  # the server's own lookup of a key
    # Before an admitted publish: commands (connect, createStream, publish) only.
    setup_message_bytes: int = 64 << 10  # one message; its header alone gets it refused
    setup_pending_bytes: int = 1 << 20  # unfinished messages' bytes, all chunk streams
    # After it: media. A message's length field is 24-bit, so 16 MiB means no limit.
    media_message_bytes: int = 16 << 20
    media_pending_bytes: int = 64 << 20
    # What a peer may ask for. SRS refuses chunk sizes over 64 KiB; encoders use 4 KiB.
    max_chunk_size: int = 64 << 10
    amf0_max_values: int = 1024  # values in one command, nested ones included
    amf0_max_depth: int = 8  # objects/arrays within each other in one command
    # Failed keys: an address that was refused this many unknown keys within the
    # window is refused without a lookup for `refused_keys_block_s` (0: never).
    refused_keys_per_ip: int = 10
    refused_keys_window_s: float = 60.0
    refused_keys_block_s: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "setup_message_bytes",
            "setup_pending_bytes",
            "media_message_bytes",
            "media_pending_bytes",
            "max_chunk_size",
            "amf0_max_values",
            "amf0_max_depth",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.amf0_max_depth > MAX_DEPTH:
            raise ValueError(f"amf0_max_depth is over {MAX_DEPTH} (the decoder recurses)")
        if self.max_connections_per_ip < 0 or self.refused_keys_per_ip < 0:
            raise ValueError("per-address limits are 0 (off) or more")
        if self.setup_message_bytes > self.media_message_bytes:
            raise ValueError("setup_message_bytes is over media_message_bytes")
        if self.setup_pending_bytes > self.media_pending_bytes:
            raise ValueError("setup_pending_bytes is over media_pending_bytes")
