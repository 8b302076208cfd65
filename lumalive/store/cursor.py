"""Opaque pagination cursors: base64 of a JSON list of the sort key."""

from __future__ import annotations

import base64
import json
from typing import Any

from lumalive.errors import BadRequest

__all__ = ["encode", "decode"]


def encode(*key: Any) -> str:
    raw = json.dumps([str(k) for k in key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, parts: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        raise BadRequest("cursor is not valid", "invalid_cursor") from None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(k, str) for k in key):
        raise BadRequest("cursor is not valid", "invalid_cursor")
    return key
