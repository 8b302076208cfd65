"""Opaque pagination cursors: base64 of a JSON list of the sort key.

A cursor comes back from the client, so everything in it is checked here before it
reaches SQL: a forged cursor is a 400 `invalid_cursor`, never a database error.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from lumalive.errors import BadRequest

__all__ = ["encode", "decode", "decode_time_id"]


def _invalid() -> BadRequest:
    return BadRequest("cursor is not valid", "invalid_cursor")


def encode(*key: Any) -> str:
    raw = json.dumps([str(k) for k in key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, parts: int) -> list[str]:
    """The cursor's `parts` strings; BadRequest if it is not a cursor of that shape."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        raise _invalid() from None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(k, str) for k in key):
        raise _invalid()
    return key


def decode_time_id(cursor: str) -> tuple[datetime, UUID]:
    """A (timestamp with time zone, id) keyset cursor, checked: a forged cursor of the
    right shape but holding, say, "yesterday" or a NUL byte is BadRequest too."""
    ts, sid = decode(cursor, 2)
    try:
        at, row_id = datetime.fromisoformat(ts), UUID(sid)
    except ValueError:
        raise _invalid() from None
    # Exactly what `encode` makes of an aware timestamp and an id, nothing looser.
    if at.tzinfo is None or at.isoformat() != ts or str(row_id) != sid:
        raise _invalid()
    return at, row_id
