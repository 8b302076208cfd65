"""The HAProxy ingress's guard (cluster/haproxy_guard.py) on the config Serve really
renders, run by the real HAProxy through the shim Serve is given, in front of a small
real ASGI server that answers with what the API's client-address logic
(serve_app.callers) makes of each request. No Ray cluster: the config comes from
Serve's own renderer (ray.serve._private.haproxy, the code the HAProxyManager actor
runs), so a Ray upgrade that changes the template fails here, not in production."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
from ray.serve.config import HTTPOptions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect as ws_connect

from cluster.haproxy_guard import GuardError, guard_config, install_shim, is_shim, real_binary
from serve_app.callers import client_address
from tests.utils.api import free_port, listening

TRUSTED = "127.0.0.0/8 ::1"  # what the launcher's trust_ingress adds on one node
SPOOF = {"x-forwarded-for": "203.0.113.9", "x-real-ip": "203.0.113.9", "forwarded": "for=1.2.3.4"}


def _seen(conn: Request | WebSocket) -> dict[str, str | None]:
    return {
        "client": client_address(conn, TRUSTED),
        "xff": conn.headers.get("x-forwarded-for"),
        "real_ip": conn.headers.get("x-real-ip"),
        "forwarded": conn.headers.get("forwarded"),
    }


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse(_seen(request))


async def _healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("success")  # Serve's health check expects 200


async def _chat(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(_seen(websocket))
    await websocket.send_text(await websocket.receive_text())


APP = Starlette(
    routes=[
        Route("/whoami", _whoami),
        Route("/-/healthz", _healthz),
        WebSocketRoute("/chat", _chat),
    ]
)


def _lan_address() -> str:
    """This machine's address on a non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = str(s.getsockname()[0])
    assert not address.startswith("127."), "the test needs a non-loopback interface"
    return address


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 10
    while not listening("127.0.0.1", port):
        assert proc is None or proc.poll() is None, proc.stderr.read() if proc else ""
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def _serve_config(directory: Path, *, frontend_port: int, backend_port: int) -> Path:
    """The config Serve's HAProxyManager writes for one app with one replica."""
    config = HAProxyConfig(
        http_options=HTTPOptions(host="127.0.0.1", port=frontend_port),
        socket_path=str(directory / "admin.sock"),
        enable_hap_optimization=False,
        metrics_enabled=False,
        stats_port=free_port(),
        metrics_port=free_port(),
        is_head=True,
    )
    api = HAProxyApi(cfg=config, config_file_path=str(directory / "haproxy.cfg"))
    server = ServerConfig(name="replica_1", host="127.0.0.1", port=backend_port)
    backend = BackendConfig(name="lumalive", path_prefix="/", servers=[server], app_name="x")
    api.set_backend_configs({"lumalive": backend})
    api._generate_config_file_internal()  # the renderer the actor runs on every update
    return Path(api.config_file_path)


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(APP, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_listening(port)
    yield port
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def ingress(backend: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """HAProxy started as Serve starts it (`BINARY -db -f CONFIG`), BINARY our shim."""
    directory = tmp_path_factory.mktemp("haproxy")
    ports = {"api": free_port(), "stats": free_port()}
    config = _serve_config(directory, frontend_port=ports["api"], backend_port=backend)
    shim = install_shim(
        directory / "bin", api_host="127.0.0.1", stats_port=ports["stats"], binary=real_binary()
    )
    proc = subprocess.Popen([str(shim), "-db", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        _wait_listening(ports["api"], proc)
        ports["pid"] = proc.pid
        yield ports
    finally:
        proc.terminate()
        proc.wait(5)


def test_serves_config_as_rendered_binds_everywhere_and_the_guard_fixes_it(tmp_path: Path) -> None:
    raw = _serve_config(tmp_path, frontend_port=8000, backend_port=9000).read_text()
    assert "bind *:" in raw or "bind :" in raw  # Ray's stats/metrics listeners (why we guard)
    guarded = guard_config(raw, api_host="127.0.0.1")
    binds = [line.split()[1] for line in guarded.splitlines() if line.split()[:1] == ["bind"]]
    assert binds == ["127.0.0.1:8000"]  # the API port only: no stats, no metrics
    assert guard_config(guarded, api_host="127.0.0.1") == guarded  # a reload is a no-op
    with_stats = guard_config(raw, api_host="::1", stats_port=9999)
    binds = [line.split()[1] for line in with_stats.splitlines() if line.split()[:1] == ["bind"]]
    assert binds == ["[::1]:8000", "127.0.0.1:9999"]


def test_a_config_of_another_shape_is_refused() -> None:
    with pytest.raises(GuardError):
        guard_config("global\n    maxconn 10\nfrontend web\n    bind *:80\n", api_host="127.0.0.1")


def test_the_process_is_the_one_serve_started(ingress: dict[str, int]) -> None:
    """Serve recognises its workers by the config path in their command line."""
    cmdline = Path(f"/proc/{ingress['pid']}/cmdline").read_bytes().split(b"\0")
    assert "haproxy" in Path(cmdline[0].decode()).name and b"-f" in cmdline


def test_rest_through_haproxy_sees_the_real_peer_not_the_clients_header(
    ingress: dict[str, int],
) -> None:
    url = f"http://127.0.0.1:{ingress['api']}/whoami"
    seen = httpx.get(url, headers=SPOOF, timeout=5).json()
    assert seen == {
        "client": "127.0.0.1",
        "xff": "127.0.0.1",
        "real_ip": "127.0.0.1",
        "forwarded": None,
    }


def test_websocket_through_haproxy(ingress: dict[str, int]) -> None:
    async def chat() -> tuple[dict[str, str], str]:
        url = f"ws://127.0.0.1:{ingress['api']}/chat"
        async with ws_connect(url, additional_headers=SPOOF, open_timeout=5) as ws:
            seen = json.loads(await ws.recv())
            await ws.send("hello")
            return seen, str(await ws.recv())

    seen, echo = asyncio.run(chat())
    assert seen["client"] == "127.0.0.1" and seen["xff"] == "127.0.0.1" and echo == "hello"


def test_ports_are_on_the_configured_host_only(ingress: dict[str, int]) -> None:
    lan = _lan_address()
    stats = httpx.get(f"http://127.0.0.1:{ingress['stats']}/stats", timeout=5)
    assert stats.status_code == 200 and "Statistics Report" in stats.text
    metrics = httpx.get(f"http://127.0.0.1:{ingress['stats']}/metrics", timeout=5)
    assert "haproxy_process" in metrics.text
    assert not listening(lan, ingress["stats"])
    assert not listening(lan, ingress["api"])
    assert listening("127.0.0.1", ingress["api"])


def test_the_shim_refuses_to_start_haproxy_on_an_unknown_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("global\n    maxconn 10\nfrontend web\n    bind *:1\n")
    shim = install_shim(tmp_path / "bin", api_host="127.0.0.1", stats_port=0, binary=real_binary())
    done = subprocess.run([str(shim), "-db", "-f", str(config)], capture_output=True, timeout=30)
    assert done.returncode != 0 and b"refusing to start HAProxy" in done.stderr
    assert os.path.getsize(config) > 0 and "guarded" not in config.read_text()


def test_the_launcher_points_serve_at_the_shim_and_the_shim_never_at_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster.launcher import ingress_env
    from lumalive.settings import Settings

    for name in ("RAY_SERVE_HAPROXY_BINARY_PATH", "RAY_SERVE_ENABLE_HA_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path, ingress="haproxy")  # type: ignore[call-arg]
    ingress_env(settings)
    ingress_env(settings)  # again (a second System in one process): still one hop
    shim = Path(os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert is_shim(shim) and os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert shim.read_text().split()[-2] == real_binary() and not is_shim(Path(real_binary()))
