"""Webhook endpoints and their delivery queue (sql/0007).

Users' endpoints and deliveries go through the application role, so RLS shows each
user only their own; the signing secret is not readable there (it is returned once,
by the route that made it). The dispatcher's functions (`claim`, `record`, `next_due`)
call sql/0007's SECURITY DEFINER functions. Platform endpoints (no owner) are the
operator's: the `*_platform` functions take a psycopg cursor connected as the schema
owner, as `lumalive webhook` connects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "Claimed",
    "insert",
    "count_owned",
    "list_owned",
    "get",
    "delete",
    "deliveries",
    "claim",
    "record",
    "next_due",
    "add_platform",
    "list_platform",
    "remove_platform",
]

_COLUMNS = "id, owner_id, url, events, created_at"
_DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at,"
    " last_attempt_at, last_status_code, last_error, delivered_at, created_at, payload"
)


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to this dispatcher for one attempt (`attempts` counts it)."""

    id: UUID
    event_id: UUID
    attempts: int
    url: str
    secret: str
    payload: dict[str, Any]


async def insert(
    conn: AsyncConnection, owner_id: UUID, url: str, events: Sequence[str], secret: str
) -> dict[str, Any]:
    """A new endpoint of `owner_id` (the acting user); the row without its secret."""
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (owner_id, url, events, secret)"
                    f" VALUES (:o, :u, :e, :s) RETURNING {_COLUMNS}"
                ),
                {"o": owner_id, "u": url, "e": list(events), "s": secret},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def count_owned(conn: AsyncConnection, owner_id: UUID) -> int:
    result = await conn.execute(
        text("SELECT count(*) FROM webhook_endpoints WHERE owner_id = :o"), {"o": owner_id}
    )
    return int(result.scalar_one())


async def list_owned(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The acting user's endpoints, oldest first (RLS shows no one else's)."""
    rows = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id")
    )
    return [dict(r) for r in rows.mappings()]


async def get(conn: AsyncConnection, endpoint_id: UUID) -> dict[str, Any] | None:
    """The endpoint if it is the acting user's, else None."""
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = :i"),
                {"i": endpoint_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def delete(conn: AsyncConnection, endpoint_id: UUID) -> bool:
    """Remove the acting user's endpoint (and its deliveries); False if not theirs."""
    result = await conn.execute(
        text("DELETE FROM webhook_endpoints WHERE id = :i RETURNING id"), {"i": endpoint_id}
    )
    return result.first() is not None


async def deliveries(conn: AsyncConnection, endpoint_id: UUID, limit: int) -> list[dict[str, Any]]:
    """An endpoint's newest deliveries first (RLS: only the endpoint owner's)."""
    rows = await conn.execute(
        text(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = :i"
            " ORDER BY created_at DESC, id LIMIT :n"
        ),
        {"i": endpoint_id, "n": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def claim(conn: AsyncConnection, max_rows: int, lease_s: float) -> list[Claimed]:
    rows = await conn.execute(
        text("SELECT id, event_id, attempts, url, secret, payload FROM webhook_claim(:n, :l)"),
        {"n": max_rows, "l": lease_s},
    )
    return [Claimed(**r) for r in rows.mappings()]


async def record(
    conn: AsyncConnection,
    delivery_id: UUID,
    attempt: int,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    retry_in_s: float | None,
) -> None:
    await conn.execute(
        text("SELECT webhook_record(:d, :a, :ok, :c, :e, :r)"),
        {
            "d": delivery_id,
            "a": attempt,
            "ok": ok,
            "c": status_code,
            "e": error,
            "r": retry_in_s,
        },
    )


async def next_due(conn: AsyncConnection) -> float | None:
    """Seconds until the next pending delivery is due (<= 0: now), None if none is
    pending; measured on the database's clock, which set the due times."""
    due = (
        await conn.execute(
            text("SELECT EXTRACT(EPOCH FROM webhook_next_due() - clock_timestamp())")
        )
    ).scalar_one()
    return None if due is None else float(due)


def add_platform(cur: Cursor[Any], url: str, events: list[str], secret: str) -> UUID:
    cur.execute(
        "INSERT INTO webhook_endpoints (owner_id, url, events, secret)"
        " VALUES (NULL, %s, %s, %s) RETURNING id",
        (url, events, secret),
    )
    row = cur.fetchone()
    assert row is not None
    endpoint_id: UUID = row[0]
    return endpoint_id


def list_platform(cur: Cursor[Any]) -> list[tuple[UUID, str, list[str], datetime]]:
    cur.execute(
        "SELECT id, url, events, created_at FROM webhook_endpoints"
        " WHERE owner_id IS NULL ORDER BY created_at, id"
    )
    return [tuple(r) for r in cur.fetchall()]


def remove_platform(cur: Cursor[Any], endpoint_id: UUID) -> bool:
    cur.execute(
        "DELETE FROM webhook_endpoints WHERE id = %s AND owner_id IS NULL RETURNING id",
        (endpoint_id,),
    )
    return cur.fetchone() is not None
