"""RTMP ingest: publishers (OBS, ffmpeg) push to one port; each accepted publish
becomes an `IngestSession` whose media is read as FLV (PyAV demuxes it live).

Modules, innermost first: `amf0` (values), `message` (RTMP messages), `chunk`
(reading the chunk stream), `writer` (writing it), `flv` (tags), `flv_reader`
(one reader's buffer), `fanout` (tags to every reader, the GOP cache), `session`
(one publish), `limits` (what a peer may do, before and after it publishes),
`peer` (its address), `throttle` (addresses that guess keys), `commands`
(connect/createStream/publish/…), `connection` (one publisher's socket:
handshake, read loop), `rtmp_server` (the port, routing by stream key). No Ray here.
"""

from media.rtmp.errors import (
    IngestError,
    LimitExceededError,
    ProtocolError,
    SubscriberLaggedError,
)
from media.rtmp.limits import IngestLimits
from media.rtmp.rtmp_server import DEFAULT_PORT, Authorize, OnSession, RtmpIngestServer
from media.rtmp.session import FlvReader, IngestSession, SessionStats

__all__ = [
    "DEFAULT_PORT",
    "Authorize",
    "FlvReader",
    "IngestError",
    "IngestLimits",
    "IngestSession",
    "LimitExceededError",
    "OnSession",
    "ProtocolError",
    "RtmpIngestServer",
    "SessionStats",
    "SubscriberLaggedError",
]
