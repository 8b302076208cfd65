"""The TypeScript client library (`web/`: LiveStreamingService, useLiveStreaming)
against the real system: its Vitest suite runs with the API's URL and real users'
tokens, so every call and every SSE subscription in it hits the running backend.

The suite (web/test/) holds the spec's three usage examples verbatim, the error
shape as `ApiError`, chat and reactions seen by a second user, and SSE resume
with `Last-Event-ID` (no duplicate, no gap). Needs `npm ci --prefix web`
(`make install-test` runs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from lumalive.settings import Settings
from tests.utils.api import Person

WEB = Path(__file__).resolve().parents[2] / "web"
USERS = 8  # web/test/*.ts pick theirs by index, so stream quotas never collide


async def _vitest(env: dict[str, str]) -> tuple[int, str]:
    npm = shutil.which("npm")
    assert npm, "npm is not installed (Node 20 and npm are needed for the web client)"
    assert (WEB / "node_modules").is_dir(), "run `npm ci --prefix web` (make install-test)"
    proc = await asyncio.create_subprocess_exec(
        npm,
        "test",
        "--",
        "--reporter=verbose",
        cwd=WEB,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.slow
async def test_typescript_client_suite_passes_against_the_running_api(
    settings: Settings, make_user: Callable[[str], Awaitable[Person]]
) -> None:
    people = [await make_user(f"web{i}") for i in range(USERS)]
    users = [{"id": str(p.id), "token": p.token, "name": p.name} for p in people]
    env = {
        **os.environ,
        "LUMALIVE_API_URL": settings.api_url,
        "LUMALIVE_TEST_USERS": json.dumps(users),
        "CI": "true",  # vitest: no watch mode, no interactive output
        "NO_COLOR": "1",  # plain text, for the summary line read below
    }
    code, output = await _vitest(env)
    print(output)
    assert code == 0, output
    # It really ran its tests (none skipped), not zero of them.
    summary = re.search(r"Tests\s+(\d+) passed \((\d+)\)", output)
    assert summary and summary[1] == summary[2] and int(summary[1]) > 0, output
