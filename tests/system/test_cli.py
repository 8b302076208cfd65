"""The `lumalive` command line against the session's Postgres.

`test_down_stops_everything_up_started` needs an instance of its own; its `up --detach`
starts as the module begins (`separate`), so it comes up while the other tests run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.utils.api import BASE, free_port
from tests.utils.cli import run_cli


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args)


@dataclass
class Separate:
    """A `lumalive up --detach` on its own data dir, ports and Ray, under way."""

    data_dir: Path
    env: dict[str, str]
    up: subprocess.Popen[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module", autouse=True)
def separate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Separate]:
    data_dir = tmp_path_factory.mktemp("separate")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DATABASE_URL")}
    env.update(
        LUMALIVE_DATA_DIR=str(data_dir),
        LUMALIVE_API_PORT=str(free_port()),
        LUMALIVE_RTMP_PORT=str(free_port()),
        LUMALIVE_DASHBOARD_PORT=str(free_port()),
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "up", "--detach"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    instance = Separate(data_dir, env, up)
    try:
        yield instance
    finally:
        if up.poll() is None:
            up.wait(timeout=300)
        if (data_dir / "lumalive.pid").exists():  # the test did not get to `down`
            instance.cli("down")


async def test_token_creates_user_and_works_against_the_api(client, settings):
    out = _cli(settings, "token", "cli-alice", "--ttl", "120")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    r = await client.post(
        f"{BASE}/create",
        json={"title": "from the cli"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201
    again = _cli(settings, "token", "cli-alice").stdout.strip().splitlines()[-1]
    r2 = await client.get(
        f"{BASE}/user/{r.json()['user_id']}", headers={"Authorization": f"Bearer {again}"}
    )
    assert [s["title"] for s in r2.json()["items"]] == ["from the cli"]  # same user


def test_migrate_is_idempotent(settings):
    for _ in range(2):
        out = _cli(settings, "migrate")
        assert out.returncode == 0 and "migrations applied" in out.stdout, out.stderr


def test_ingest_joins_a_running_cluster_idempotently(settings):
    """`lumalive ingest` (the KubeRay path) finds the cluster's ingest actor and keeps it."""
    import ray

    from actors import ingest_actor

    before = ingest_actor.lookup()
    assert before is not None
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LUMALIVE_DATA_DIR": str(settings.data_dir),
        "LUMALIVE_RTMP_PORT": str(settings.rtmp_port),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
    }
    out = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f":{settings.rtmp_port}/live" in out.stdout
    after = ingest_actor.lookup()
    assert after is not None and after._actor_id == before._actor_id


def test_up_refuses_a_taken_port_before_starting_anything(tmp_path):
    """Another server on the API port: `up --detach` says so and exits, rather than
    reporting the other server's health as its own."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "LUMALIVE_DATA_DIR": str(tmp_path),
            "LUMALIVE_API_PORT": str(port),
            "LUMALIVE_RTMP_PORT": "0",
            "LUMALIVE_DASHBOARD_PORT": "0",
        }
        out = subprocess.run(
            [sys.executable, "-m", "cluster.cli", "up", "--detach"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"127.0.0.1:{port} is in use" in out.stderr and "LUMALIVE_API_PORT" in out.stderr
    assert not (tmp_path / "lumalive.pid").exists()
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_down_stops_everything_up_started(separate: Separate) -> None:
    """`up --detach` then `down`: no Ray process (agents included) and no Postgres of
    that instance is left. A separate instance: its own data dir, ports and Ray."""
    import psutil

    tmp_path = separate.data_dir
    out, err = separate.up.communicate(timeout=300)
    assert separate.up.returncode == 0, out + err
    started = psutil.Process(int((tmp_path / "lumalive.pid").read_text()))
    tree = [started, *started.children(recursive=True)]
    postmaster = int((tmp_path / "pg" / "postmaster.pid").read_text().split()[0])
    tree.append(psutil.Process(postmaster))
    names = " ".join(p.name() for p in tree)
    assert "raylet" in names and "postgres" in names, names

    down = separate.cli("down")
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    left = [f"{p.pid}" for p in tree if alive(p)]
    assert not left, f"still running after down: {left}"
