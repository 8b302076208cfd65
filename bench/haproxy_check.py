"""The HAProxy ingress end to end: the whole system as `LUMALIVE_INGRESS=haproxy
lumalive up` starts it (cluster.launcher.System, Serve's HAProxy run through our
guard), checked from outside as a client. Too slow for the suite (a second Postgres,
Ray and Serve, ~30 s on the 2-core box); tests/unit/test_haproxy_ingress.py runs the
same guard with Serve's renderer and a real HAProxy in the suite.

Checks: a REST call through HAProxy; chat over the WebSocket (sent and acknowledged)
and an SSE stream; a client's own X-Forwarded-For is not what the API believes (with
one anonymous realtime connection allowed per address, a second with another spoofed
address is refused, 429 `too_many_connections`); the API and stats ports answer on
loopback and not on another interface.

    flock /tmp/lumalive-system.lock .venv/bin/python -m bench.haproxy_check
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect

from cluster.launcher import System
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store.users import create_named_user
from tests.utils.api import listening

BASE = "/api/live-streaming"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lan_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent
        return str(s.getsockname()[0])


def check(name: str, ok: bool, detail: object = "") -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    return ok


async def _person(settings: Settings) -> dict[str, str]:
    database = Database(settings, pool_size=1)
    try:
        async with database.acting(None) as conn:
            user_id = await create_named_user(conn, f"hap-{uuid.uuid4().hex[:8]}")
    finally:
        await database.dispose()
    assert settings.jwt_secret
    token = TokenService(settings.jwt_secret, settings.jwt_audience).issue(user_id)
    return {"authorization": f"Bearer {token}"}


async def _sse_status(client: httpx.AsyncClient, url: str, spoof: str) -> tuple[int, bytes]:
    async with client.stream("GET", url, headers={"x-forwarded-for": spoof}) as r:
        if r.status_code != 200:
            return r.status_code, await r.aread()
        first = await anext(r.aiter_bytes())
        return 200, first


async def _checks(settings: Settings) -> list[bool]:
    api = settings.api_url
    auth = await _person(settings)
    results = []
    async with httpx.AsyncClient(base_url=api, timeout=20) as client:
        r = await client.post(f"{BASE}/create", json={"title": "hap"}, headers=auth)
        results.append(check("REST create through HAProxy", r.status_code == 201, r.status_code))
        sid = r.json()["id"]
        r = await client.post(f"{BASE}/start/{sid}", headers=auth)
        results.append(check("REST start", r.status_code == 200, r.status_code))
        ws_url = api.replace("http", "ws", 1) + f"{BASE}/{sid}/ws?access_token="
        token = auth["authorization"].split()[1]
        async with ws_connect(ws_url + token, open_timeout=20) as ws:
            await ws.send(json.dumps({"type": "chat", "message": "hello haproxy", "ref": "1"}))
            ack = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if msg.get("type") in ("chat_ack", "error"):
                    ack = msg
                    break
        results.append(
            check("WebSocket chat acknowledged", bool(ack) and ack["type"] == "chat_ack", ack)
        )
        sse = f"{BASE}/{sid}/events/stream"
        held = await client.send(
            client.build_request("GET", sse, headers={"x-forwarded-for": "198.51.100.1"}),
            stream=True,
        )
        results.append(check("SSE stream opens", held.status_code == 200, held.status_code))
        second, body = await _sse_status(client, sse, "198.51.100.2")
        results.append(
            check(
                "spoofed X-Forwarded-For not believed (2nd anonymous SSE refused)",
                second == 429 and b"too_many_connections" in body,
                (second, body[:120]),
            )
        )
        await held.aclose()
    lan = _lan_address()
    results.append(check("API port on loopback", listening("127.0.0.1", settings.api_port)))
    results.append(check(f"API port not on {lan}", not listening(lan, settings.api_port)))
    stats = httpx.get(f"http://127.0.0.1:{settings.haproxy_stats_port}/stats", timeout=5)
    results.append(check("stats on loopback", stats.status_code == 200, stats.status_code))
    results.append(check(f"stats not on {lan}", not listening(lan, settings.haproxy_stats_port)))
    results.append(check("Serve's fixed 8404 not on " + lan, not listening(lan, 8404)))
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lumalive-hap-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            api_port=_free_port(),
            dashboard_port=_free_port(),
            rtmp_port=_free_port(),
            database_url=None,
            ray_address=None,
            api_replicas=1,
            ingress="haproxy",
            haproxy_stats_port=_free_port(),
            max_realtime_per_ip=1,
        )
        system = System(settings)
        started = time.monotonic()
        try:
            settings = system.start()
            print(f"system up with the HAProxy ingress in {time.monotonic() - started:.1f} s")
            print(f"trusted proxies: {settings.trusted_proxies}")
            results = asyncio.run(_checks(settings))
        finally:
            system.stop(everything=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
