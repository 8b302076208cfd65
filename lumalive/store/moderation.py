"""Trust and safety in Postgres: roles, stream moderators, bans and timeouts, the
report queue and its resolutions, the audit log (sql/0006).

Postgres decides every one of these (RLS and the functions of 0006); the API asks
first only to answer with a clear error. Functions here take a connection acting as
the caller and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from lumalive.store import cursor

__all__ = [
    "Standing",
    "RESOLUTIONS",
    "standing",
    "is_platform_moderator",
    "may_moderate",
    "may_ban",
    "sync_token_moderator",
    "grant_platform_moderator",
    "appoint",
    "remove_moderator",
    "list_moderators",
    "ban",
    "lift",
    "list_bans",
    "report_queue",
    "resolve_report",
    "report_status",
    "audit_log",
]

RESOLUTIONS = ("dismiss", "warn", "end_stream", "suspend")

_BAN_COLUMNS = "stream_id, user_id, banned_by, reason, until, created_at"


@dataclass(frozen=True, slots=True)
class Standing:
    """The acting user's standing on a stream."""

    banned: bool  # barred from the stream: joining, chat, reactions, its feeds
    timed_out_until: datetime | None  # barred from chat and reactions until then
    reason: str
    nsfw_ok: bool  # may join it: not NSFW, or the owner, or opted in


async def standing(conn: AsyncConnection, stream_id: UUID) -> Standing:
    """One round trip: the acting user's ban or timeout on the stream, and NSFW opt-in."""
    row = (
        await conn.execute(
            text(
                "SELECT b.until, b.reason, b.found, nsfw_allowed(:s) AS nsfw_ok FROM"
                " (SELECT 1) one LEFT JOIN LATERAL"
                " (SELECT until, reason, true AS found FROM my_stream_ban(:s)) b ON true"
            ),
            {"s": stream_id},
        )
    ).one()
    banned = bool(row.found) and row.until is None
    return Standing(banned, row.until if row.found else None, row.reason or "", row.nsfw_ok)


async def _flag(conn: AsyncConnection, sql: str, **params: Any) -> bool:
    return bool((await conn.execute(text(sql), params)).scalar())


async def is_platform_moderator(conn: AsyncConnection) -> bool:
    return await _flag(conn, "SELECT is_platform_moderator()")


async def may_moderate(conn: AsyncConnection, stream_id: UUID) -> bool:
    """The acting user owns the stream or is one of its moderators."""
    return await _flag(conn, "SELECT may_moderate_stream(:s)", s=stream_id)


async def may_ban(conn: AsyncConnection, stream_id: UUID, target: UUID) -> bool:
    return await _flag(conn, "SELECT may_ban(:s, :t)", s=stream_id, t=target)


async def sync_token_moderator(conn: AsyncConnection, claimed: bool) -> bool:
    """Keep the acting user's token-granted moderator row in step with their token;
    whether they are a platform moderator now."""
    return await _flag(conn, "SELECT sync_token_moderator(:c)", c=claimed)


async def grant_platform_moderator(conn: AsyncConnection, username: str, revoke: bool) -> str:
    """An operator's grant or revocation (the connection is an operator session: the
    schema owner, no acting user): "granted", "revoked", "unchanged" or "no_such_user"."""
    user_id = (
        await conn.execute(text("SELECT id FROM users WHERE username = :u"), {"u": username})
    ).scalar()
    if user_id is None:
        return "no_such_user"
    if revoke:
        sql = "DELETE FROM platform_moderators WHERE user_id = :id RETURNING user_id"
    else:  # an operator's grant outlives the token claim that may have made the row
        sql = (
            "INSERT INTO platform_moderators (user_id, source) VALUES (:id, 'operator')"
            " ON CONFLICT (user_id) DO UPDATE SET source = 'operator'"
            " WHERE platform_moderators.source <> 'operator' RETURNING user_id"
        )
    changed = (await conn.execute(text(sql), {"id": user_id})).first() is not None
    if not changed:
        return "unchanged"
    return "revoked" if revoke else "granted"


async def appoint(conn: AsyncConnection, stream_id: UUID, owner: UUID, user_id: UUID) -> bool:
    """Make `user_id` a moderator of the stream; False if they already were."""
    result = await conn.execute(
        text(
            "INSERT INTO stream_moderators (stream_id, user_id, appointed_by)"
            " VALUES (:s, :u, :o) ON CONFLICT DO NOTHING"
        ),
        {"s": stream_id, "u": user_id, "o": owner},
    )
    return result.rowcount == 1


async def remove_moderator(conn: AsyncConnection, stream_id: UUID, user_id: UUID) -> bool:
    result = await conn.execute(
        text("DELETE FROM stream_moderators WHERE stream_id = :s AND user_id = :u"),
        {"s": stream_id, "u": user_id},
    )
    return result.rowcount == 1


async def list_moderators(conn: AsyncConnection, stream_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT m.user_id, u.username, m.appointed_by, m.created_at"
            " FROM stream_moderators m JOIN users u ON u.id = m.user_id"
            " WHERE m.stream_id = :s ORDER BY m.created_at, m.user_id"
        ),
        {"s": stream_id},
    )
    return [dict(r) for r in rows.mappings()]


async def ban(
    conn: AsyncConnection,
    stream_id: UUID,
    by: UUID,
    user_id: UUID,
    minutes: int | None,
    reason: str,
) -> dict[str, Any]:
    """Ban (`minutes` None) or time out; a second call replaces the first."""
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO stream_bans (stream_id, user_id, banned_by, reason, until)"
                    " VALUES (:s, :u, :b, :r,"
                    " now() + make_interval(mins => CAST(:m AS integer)))"
                    " ON CONFLICT (stream_id, user_id) DO UPDATE SET"
                    " banned_by = EXCLUDED.banned_by,"
                    " reason = EXCLUDED.reason, until = EXCLUDED.until, created_at = now()"
                    f" RETURNING {_BAN_COLUMNS}"
                ),
                {"s": stream_id, "u": user_id, "b": by, "r": reason, "m": minutes},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def lift(conn: AsyncConnection, stream_id: UUID, user_id: UUID) -> bool:
    """Lift a ban or timeout; False if there was none (or it is not the actor's to lift)."""
    result = await conn.execute(
        text("DELETE FROM stream_bans WHERE stream_id = :s AND user_id = :u"),
        {"s": stream_id, "u": user_id},
    )
    return result.rowcount == 1


async def list_bans(conn: AsyncConnection, stream_id: UUID) -> list[dict[str, Any]]:
    """Bans and timeouts still in force, newest first."""
    rows = await conn.execute(
        text(
            f"SELECT {_BAN_COLUMNS} FROM stream_bans WHERE stream_id = :s"
            " AND (until IS NULL OR until > now()) ORDER BY created_at DESC, user_id"
        ),
        {"s": stream_id},
    )
    return [dict(r) for r in rows.mappings()]


async def report_queue(
    conn: AsyncConnection, status: str | None, *, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Reports newest first with their stream, reporter and moderation data
    (platform moderators only: the database refuses others)."""
    ts, rid = cursor.decode_time_id(after) if after else (None, None)
    rows = (
        await conn.execute(
            text(
                "SELECT * FROM report_queue(CAST(:st AS text), CAST(:n AS integer),"
                " CAST(:ts AS timestamptz), CAST(:rid AS uuid))"
            ),
            {"st": status, "n": limit + 1, "ts": ts, "rid": rid},
        )
    ).mappings()
    items = [dict(r) for r in rows]
    nxt = None
    if len(items) > limit:
        items = items[:limit]
        nxt = cursor.encode(items[-1]["created_at"].isoformat(), items[-1]["id"])
    return items, nxt


async def resolve_report(
    conn: AsyncConnection, report_id: UUID, action: str, note: str
) -> dict[str, Any] | None:
    """Resolve an open report (sql/0006 `resolve_report`): the stream, its owner and its
    status before; None if the report is not open."""
    row = (
        (
            await conn.execute(
                text("SELECT * FROM resolve_report(:r, :a, :n)"),
                {"r": report_id, "a": action, "n": note},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def report_status(conn: AsyncConnection, report_id: UUID) -> str | None:
    """A report's status as the actor may see it; None if they may not see it."""
    status: str | None = (
        await conn.execute(
            text("SELECT status FROM stream_reports WHERE id = :r"), {"r": report_id}
        )
    ).scalar()
    return status


async def audit_log(
    conn: AsyncConnection, *, stream_id: UUID | None, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """Audit rows the actor may read (RLS), newest first; `before`: an id cursor."""
    where = ["true"]
    params: dict[str, Any] = {"n": limit}
    if stream_id is not None:
        where.append("stream_id = :s")
        params["s"] = stream_id
    if before is not None:
        where.append("id < :b")
        params["b"] = before
    rows = await conn.execute(
        text(
            "SELECT id, actor_id, action, stream_id, target_user_id, report_id, message_id,"
            f" details, created_at FROM moderation_audit WHERE {' AND '.join(where)}"
            " ORDER BY id DESC LIMIT :n"
        ),
        params,
    )
    return [dict(r) for r in rows.mappings()]
