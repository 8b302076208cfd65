"""Errors of the RTMP ingest. They stay inside the ingest: a publisher sees an RTMP
status or a closed socket, never a Python error.

    IngestError
    ├── ProtocolError (ValueError)          a publisher sent bytes that are not RTMP/AMF0
    │   └── LimitExceededError              … or more than the ingest's limits allow
    └── SubscriberLaggedError (BufferError) a reader fell too far behind the live stream
                                            and was cut off rather than stall the ingest
"""

from __future__ import annotations

__all__ = ["IngestError", "LimitExceededError", "ProtocolError", "SubscriberLaggedError"]


class IngestError(Exception):
    """Base of the ingest's errors."""


class ProtocolError(IngestError, ValueError):
    """Malformed RTMP chunk stream or AMF0 value; the connection is closed."""


class LimitExceededError(ProtocolError):
    """A peer went over one of the `IngestLimits`; the connection is closed."""


class SubscriberLaggedError(IngestError, BufferError):
    """A session reader buffered more than its limit; it is closed with this error."""
