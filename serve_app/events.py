"""The event contract: the one shape in which a stream's events leave the server.

SSE frames, WebSocket messages and `GET /api/live-streaming/:id/events` items are all

    {"id": seq, "type": ..., "streamId": ..., "createdAt": iso8601, "data": {...}}

Invariants:
- Stored event data keeps its snake_case keys (sql/0005 `redact_event` picks keys
  by those names); they become camelCase here, at the edge, and nowhere else.
  Only the top level of `data` is renamed: nested objects are values (a
  `reaction_batch`'s `counts` is keyed by the reactions themselves).
- Wherever the data names a user (`user_id`, i.e. `userId`) it also carries that
  user's `username` (null for users without one), so it is shown exactly where the
  reader may see the user id: never to audiences the id is redacted from.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = ["camel", "event_data", "envelope", "encode", "from_row"]


def camel(key: str) -> str:
    """`watch_duration` → `watchDuration`; keys without underscores are unchanged."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def event_data(stored: dict[str, Any], username: str | None = None) -> dict[str, Any]:
    """An event's data as clients read it: camelCase keys, plus `username` where the
    data names its user."""
    data = {camel(k): v for k, v in stored.items()}
    if "userId" in data:
        data["username"] = username
    return data


def envelope(
    id_: int | None,
    type_: str,
    stream_id: UUID,
    created_at: datetime | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The contract's object; `data` is already in client form (see `event_data`).
    `id` is None only for state messages (`viewer_count`), which are no resume point."""
    return {
        "id": id_,
        "type": type_,
        "streamId": str(stream_id),
        "createdAt": created_at.isoformat() if created_at is not None else None,
        "data": data,
    }


def encode(body: dict[str, Any]) -> str:
    """Compact JSON text, non-ASCII kept as is (emoji reactions stay readable)."""
    return json.dumps(body, default=str, ensure_ascii=False, separators=(",", ":"))


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `lumalive.store.activity.list_events` in the contract's shape."""
    return envelope(
        row["seq"],
        row["event_type"],
        row["stream_id"],
        row["created_at"],
        event_data(row["event_data"], row.get("username")),
    )
