"""The webhook dispatcher: sends the queued deliveries of sql/0007, signed, and retries.

`WebhookDispatcher` is the logic (no Ray): claim a batch of due deliveries (SKIP
LOCKED, so several dispatchers share the queue), POST each, signed, with a bounded
time, and record the outcome: delivered on a 2xx, else due again after the retry
schedule's next delay, or failed once it is spent. A claim counts the attempt and
leases the delivery first, so a dispatcher that dies mid-POST leaves it due again
after the lease: nothing is lost, and a receiver may see an id twice.

It sleeps until the next delivery is due (at most `webhook_poll_s`), and wakes at once
on NOTIFY `lumalive_webhooks`, which the enqueueing triggers send on commit.

`WebhookDispatcherActor` is its Ray face: detached, named "webhook_dispatcher" in
namespace "lumalive", `num_cpus=0` (it waits on sockets), restarted by Ray if it dies.
`cluster.launcher` starts it beside the ingest; `lumalive webhook dispatch` on a
cluster where `lumalive up` does not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import psycopg
import ray
from ray.actor import ActorHandle

from actors import placement, stream_actor
from lumalive.db import Database
from lumalive.errors import Unprocessable
from lumalive.settings import Settings
from lumalive.store import webhooks as store
from lumalive.webhooks import (
    Resolver,
    RetrySchedule,
    UrlPolicy,
    body_bytes,
    check_url,
    signature_headers,
)

__all__ = [
    "CHANNEL",
    "NAME",
    "Outcome",
    "WebhookDispatcher",
    "WebhookDispatcherActor",
    "from_settings",
    "lookup",
    "start",
    "stop",
]

NAME = "webhook_dispatcher"
CHANNEL = "lumalive_webhooks"
_USER_AGENT = "LumaLive-Webhooks/1"

log = logging.getLogger(__name__)


class Outcome:
    """What one attempt came to: `ok` on a 2xx; the status (None: no answer) and why not."""

    __slots__ = ("ok", "status_code", "error")

    def __init__(self, ok: bool, status_code: int | None, error: str | None) -> None:
        self.ok, self.status_code, self.error = ok, status_code, error


class WebhookDispatcher:
    """Claims, sends and records deliveries (see module docstring). `client` and
    `resolve` are injected so tests and other transports can stand in."""

    def __init__(
        self,
        db: Database,
        client: httpx.AsyncClient,
        schedule: RetrySchedule,
        policy: UrlPolicy,
        *,
        timeout_s: float,
        poll_s: float,
        batch: int = 32,
        resolve: Resolver | None = None,
    ) -> None:
        self._db, self._client, self._schedule, self._policy = db, client, schedule, policy
        self._timeout_s, self._poll_s, self._batch = timeout_s, poll_s, batch
        self._resolve = resolve
        # Longer than any attempt can take (the check, the POST), so a lease runs out
        # only when its dispatcher has died.
        self.lease_s = 3 * timeout_s + 10
        self.sent = 0
        self.delivered = 0

    async def run_once(self) -> int:
        """Send every due delivery this dispatcher can claim, once; how many it sent."""
        async with self._db.acting(None) as conn:
            claimed = await store.claim(conn, self._batch, self.lease_s)
        results = await asyncio.gather(*(self._deliver(d) for d in claimed), return_exceptions=True)
        for error in results:
            if isinstance(error, Exception):  # not recorded: due again after its lease
                log.warning("webhook delivery not recorded: %r", error)
        return len(claimed)

    async def run(self, wake: asyncio.Event) -> None:
        """Forever: send what is due, then sleep until more is (or `wake` is set)."""
        while True:
            wake.clear()  # before claiming: a NOTIFY from now on is not slept through
            try:
                if await self.run_once() >= self._batch:
                    continue  # there may be more due at once
                wait_s = await self._until_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is away: try again later
                log.warning("webhook dispatch failed; retrying", exc_info=True)
                wait_s = self._poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait_s)

    async def _until_due(self) -> float:
        async with self._db.acting(None) as conn:
            due = await store.next_due(conn)
        if due is None:
            return self._poll_s
        return min(self._poll_s, max(0.01, due))

    async def _deliver(self, d: store.Claimed) -> None:
        outcome = await self.send(d)
        self.sent += 1
        self.delivered += outcome.ok
        retry_in = None if outcome.ok else self._schedule.retry_in(d.attempts)
        async with self._db.acting(None) as conn:
            await store.record(
                conn,
                d.id,
                d.attempts,
                ok=outcome.ok,
                status_code=outcome.status_code,
                error=outcome.error,
                retry_in_s=retry_in,
            )

    async def send(self, d: store.Claimed) -> Outcome:
        """One signed POST of `d`: its URL checked again first (a name may now resolve
        to a private address), redirects not followed (they could lead anywhere)."""
        body = body_bytes(d.payload)
        headers = {
            **signature_headers(d.secret, str(d.event_id), int(time.time()), body),
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                await check_url(d.url, self._policy, self._resolve)
                response = await self._client.post(d.url, content=body, headers=headers)
        except Unprocessable as e:
            return Outcome(False, None, f"refused: {e.message}")
        except (TimeoutError, httpx.HTTPError) as e:
            return Outcome(False, None, f"{type(e).__name__}: {e}"[:500])
        if response.is_success:
            return Outcome(True, response.status_code, None)
        return Outcome(False, response.status_code, f"HTTP {response.status_code}")


def from_settings(settings: Settings, db: Database, client: httpx.AsyncClient) -> WebhookDispatcher:
    """A dispatcher configured by the `LUMALIVE_WEBHOOK_*` settings."""
    return WebhookDispatcher(
        db,
        client,
        RetrySchedule(tuple(settings.webhook_retry_s)),
        UrlPolicy(settings.webhook_allow_http, settings.webhook_allow_private),
        timeout_s=settings.webhook_timeout_s,
        poll_s=settings.webhook_poll_s,
    )


async def _listen(settings: Settings, wake: asyncio.Event) -> None:
    """Set `wake` on every NOTIFY of the channel; reconnects when the connection drops
    (the poll covers the gap)."""
    assert settings.app_url
    dsn = settings.app_url.replace("postgresql+psycopg://", "postgresql://", 1)
    backoff = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f'SET ROLE "{settings.app_role}"')
                await conn.execute(f"LISTEN {CHANNEL}")
                wake.set()  # anything enqueued while we were not listening
                backoff = 0.5
                async for _ in conn.notifies():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a dropped connection: reconnect
            log.warning("webhook listener lost its connection; reconnecting", exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class WebhookDispatcherActor:
    """WebhookDispatcher as a Ray actor (see module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._db = Database(settings, pool_size=4)
        # Per attempt the dispatcher bounds the whole of it too; these bound each phase.
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
        )
        self._dispatcher = from_settings(settings, self._db, self._client)
        wake = asyncio.Event()
        # Ray runs an async actor's __init__ on its event loop: start at once, so an
        # actor that Ray restarted sends again without anyone asking.
        self._tasks = [
            asyncio.get_running_loop().create_task(_listen(settings, wake)),
            asyncio.get_running_loop().create_task(self._dispatcher.run(wake)),
        ]

    async def ready(self) -> bool:
        return True

    async def status(self) -> dict[str, Any]:
        return {"sent": self._dispatcher.sent, "delivered": self._dispatcher.delivered}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
        await self._db.dispose()


def start(settings: Settings, timeout_s: float = 60.0) -> ActorHandle[Any]:
    """The dispatcher actor, created if needed (idempotent)."""
    actor: Any = WebhookDispatcherActor  # a Ray ActorClass; its stubs do not know `.options`
    handle: ActorHandle[Any] = actor.options(
        **placement.control_options(settings),
        name=NAME,
        namespace=stream_actor.NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings)
    ray.get(handle.ready.remote(), timeout=timeout_s)
    return handle


def lookup() -> ActorHandle[Any] | None:
    return stream_actor.named(NAME)


def stop(handle: ActorHandle[Any], timeout_s: float = 10.0) -> None:
    """Stop sending and remove the actor for good (what it had leased is due again
    after the lease)."""
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)
