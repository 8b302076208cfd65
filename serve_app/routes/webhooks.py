"""Webhooks: a user's endpoints for their own streams' events, and their deliveries.

The signing secret is in the create response only: it is generated here, stored for
the dispatcher, and never readable by the API again (sql/0007). Endpoint URLs must be
https to public addresses unless `LUMALIVE_WEBHOOK_ALLOW_HTTP` / `_ALLOW_PRIVATE` say
otherwise (`lumalive.webhooks.UrlPolicy`). Someone else's endpoint is a 404, as if it
did not exist (RLS shows no one else's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lumalive.errors import NotFound, RateLimited, Unprocessable
from lumalive.store import webhooks as store
from lumalive.webhooks import OWNER_EVENT_TYPES, UrlPolicy, check_url, new_secret
from serve_app.deps import CurrentUser, DbDep, Limit, SettingsDep
from serve_app.responses import ERRORS
from serve_app.schemas import storable

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], responses=ERRORS)

EventType = Literal[
    "stream.started",
    "stream.ended",
    "stream.quality_degraded",
    "moderation.flagged",
    "report.created",
]


class WebhookIn(BaseModel):
    """A new endpoint: where to POST, and which event types."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=5)]

    @field_validator("url")
    @classmethod
    def _storable(cls, v: str) -> str:
        return storable(v)

    @field_validator("events")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return sorted(set(v))


class Webhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: UUID
    url: str
    events: list[str]
    created_at: datetime


class NewWebhook(Webhook):
    secret: str = Field(description="`whsec_…`: shown in this response only; sign-check with it")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class Delivery(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: UUID
    event_id: UUID = Field(description="sent as `webhook-id`")
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "owner_id"}


@router.post("", status_code=201, response_model=NewWebhook)
async def create_webhook(
    body: WebhookIn, user: CurrentUser, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """Register an endpoint for your streams' events; the response holds its secret."""
    if not OWNER_EVENT_TYPES.issuperset(body.events):
        raise Unprocessable(
            "report.created goes to platform-wide endpoints only", "webhook_event_not_allowed"
        )
    policy = UrlPolicy(settings.webhook_allow_http, settings.webhook_allow_private)
    url = await check_url(body.url, policy)
    secret = new_secret()
    async with db.acting(user) as conn:
        cap = settings.webhook_max_per_user
        if cap and await store.count_owned(conn, user) >= cap:
            raise RateLimited(f"at most {cap} webhooks per user", 3600.0, "webhook_quota")
        row = await store.insert(conn, user, url, body.events, secret)
    return {**_public(row), "secret": secret}


@router.get("", response_model=WebhookList)
async def list_webhooks(user: CurrentUser, db: DbDep) -> dict[str, Any]:
    """Your endpoints, oldest first, without their secrets."""
    async with db.acting(user) as conn:
        rows = await store.list_owned(conn)
    return {"webhooks": [_public(r) for r in rows]}


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
async def delete_webhook(webhook_id: UUID, user: CurrentUser, db: DbDep) -> Response:
    """Remove your endpoint; its pending deliveries go with it."""
    async with db.acting(user) as conn:
        if not await store.delete(conn, webhook_id):
            raise NotFound("webhook not found", "webhook_not_found")
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    webhook_id: UUID, user: CurrentUser, db: DbDep, limit: Limit = 50
) -> dict[str, Any]:
    """Your endpoint's deliveries, newest first: status, attempts, the last answer."""
    async with db.acting(user) as conn:
        if await store.get(conn, webhook_id) is None:
            raise NotFound("webhook not found", "webhook_not_found")
        rows = await store.deliveries(conn, webhook_id, limit)
    return {"deliveries": rows}
