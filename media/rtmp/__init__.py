"""RTMP ingest: publishers (OBS, ffmpeg) push to one port; each accepted publish
becomes an `IngestSession` whose media is read as FLV (PyAV demuxes it live).

Modules, innermost first: `amf0` (values), `message` (RTMP messages), `chunk`
(reading the chunk stream), `writer` (writing it), `flv` (tags), `flv_reader`
(one reader's buffer), `fanout` (tags to every reader, the GOP cache), `session`
(one publish), `commands` (connect/createStream/publish/…), `connection` (one
publisher's socket: handshake, read loop), `rtmp_server` (the port, routing by
stream key). No Ray here.
"""

from media.rtmp.errors import IngestError, ProtocolError, SubscriberLaggedError
from media.rtmp.rtmp_server import DEFAULT_PORT, Authorize, OnSession, RtmpIngestServer
from media.rtmp.session import FlvReader, IngestSession, SessionStats

__all__ = [
    "DEFAULT_PORT",
    "Authorize",
    "FlvReader",
    "IngestError",
    "IngestSession",
    "OnSession",
    "ProtocolError",
    "RtmpIngestServer",
    "SessionStats",
    "SubscriberLaggedError",
]
