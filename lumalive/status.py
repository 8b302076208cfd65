"""A stream's lifecycle as a type: `created -> live -> ended`, never back.

The database stores the value (`live_streams.status`, with a CHECK) and the
`is_live` column is generated from it. `StreamStatus` is a `StrEnum`, so a row's
plain string compares equal to its member (`row["status"] == StreamStatus.LIVE`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["StreamStatus"]


class StreamStatus(StrEnum):
    CREATED = "created"  # made, not started: no media, no viewers
    LIVE = "live"  # started by its owner or by a publisher; viewers may join
    ENDED = "ended"  # over for good: its VOD stays, nothing new is accepted
