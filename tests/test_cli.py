"""The `lumalive` command line against the session's Postgres."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.test_api_streams import BASE


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LUMALIVE_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_token_creates_user_and_works_against_the_api(client, settings):
    out = _cli(settings, "token", "cli-alice", "--ttl", "120")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    r = await client.post(f"{BASE}/create", json={"title": "from the cli"},
                          headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201
    again = _cli(settings, "token", "cli-alice").stdout.strip().splitlines()[-1]
    r2 = await client.get(f"{BASE}/user/{r.json()['user_id']}",
                          headers={"Authorization": f"Bearer {again}"})
    assert [s["title"] for s in r2.json()["items"]] == ["from the cli"]  # same user


def test_migrate_is_idempotent(settings):
    for _ in range(2):
        out = _cli(settings, "migrate")
        assert out.returncode == 0 and "migrations applied" in out.stdout, out.stderr
