"""A Ray cluster of several nodes on this machine, owned by the caller: every node is a
`ray start --block` process this module started, with its own ports and temp dir, and
it is stopped by killing exactly those processes and their descendants (never `ray stop`,
which would stop every Ray on the machine).

`deploy` runs `lumalive up --detach` onto such a cluster, as an operator would.

`python -m tests.utils.ray_nodes probe GCS_ADDRESS` prints the cluster's nodes and named
actors as JSON (a driver of its own, so a test process already connected to another
Ray can still look at this one).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.utils.cpu_cgroup import CpuCap

__all__ = [
    "Deployed",
    "FAST_FAILURE_ENV",
    "LocalCluster",
    "RayNode",
    "cli",
    "deploy",
    "driver_env",
    "free_ports",
]

RAY = str(Path(sys.executable).with_name("ray"))
# The GCS declares a node dead after ~5 s without health checks instead of ~30 s, so a
# killed node's segments are retried within a test's patience (not much less: a node
# starved of CPU on a loaded machine must not be declared dead).
FAST_FAILURE_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (sockets held until all are chosen: the OS may hand the
    same ephemeral port out twice in a row, and Ray refuses a port used twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def driver_env(**extra: str) -> dict[str, str]:
    """The environment of a process that joins the cluster (a node or a driver): Ray
    2.60's `ray start --head` turns token authentication on by default, and these
    clusters live and die inside one test on loopback, so it is off for them."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen[bytes]
    node_manager_port: int
    log: Path
    # Its CPU cap (`add_node(cpu_quota=...)`): the cgroup its `ray start` runs in.
    cgroup: CpuCap | None = None

    def raylet(self) -> psutil.Process:
        """This node's raylet (a descendant of its `ray start`)."""
        for p in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.name() == "raylet":
                    return p
        raise LookupError(f"{self.name}: no raylet running")

    def owns(self, pid: int) -> bool:
        """Whether `pid` runs under this node (its `ray start` is an ancestor)."""
        with contextlib.suppress(psutil.Error):
            return any(p.pid == self.process.pid for p in psutil.Process(pid).parents())
        return False

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        return []


@dataclass
class LocalCluster:
    """A head and worker nodes, each `ray start --block`; `stop` ends what it started."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mn-", dir="/tmp")))
    nodes: list[RayNode] = field(default_factory=list)
    gcs_port: int = 0
    _seen: list[psutil.Process] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def start_head(self, *, num_cpus: int, resources: dict[str, float]) -> RayNode:
        self.gcs_port, client_port = free_ports(2)
        args = [
            "--head",
            f"--port={self.gcs_port}",
            f"--ray-client-server-port={client_port}",
            "--include-dashboard=false",
            f"--temp-dir={self.root}",
        ]
        return self._start("head", args, num_cpus, resources)

    def add_node(
        self,
        name: str,
        *,
        num_cpus: int,
        resources: dict[str, float],
        cpu_quota: float | None = None,
    ) -> RayNode:
        """A worker node; with `cpu_quota`, it and every process it forks are capped at
        that many cores (a cgroup of its own, `tests.utils.cpu_cgroup`): a machine of
        that size, as far as the CPU goes. Raises `CgroupUnavailable` if it cannot be."""
        return self._start(name, [f"--address={self.address}"], num_cpus, resources, cpu_quota)

    def _start(
        self,
        name: str,
        args: list[str],
        num_cpus: int,
        resources: dict[str, float],
        cpu_quota: float | None = None,
    ) -> RayNode:
        nm_port, om_port, http_port, grpc_port, metrics_port, env_port = free_ports(6)
        log = self.root / f"{name}.log"
        cmd = [
            RAY,
            "start",
            "--block",
            *args,
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            f"--node-manager-port={nm_port}",
            f"--object-manager-port={om_port}",
            f"--dashboard-agent-listen-port={http_port}",
            f"--dashboard-agent-grpc-port={grpc_port}",
            f"--metrics-export-port={metrics_port}",
            f"--runtime-env-agent-port={env_port}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
        ]
        env = driver_env(**FAST_FAILURE_ENV)
        cap = None
        if cpu_quota is not None:
            cap = CpuCap.create(f"lumalive-{self.root.name}-{name}", cpu_quota)
            cmd = cap.wrap(cmd)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        node = RayNode(name, proc, nm_port, log, cap)
        self.nodes.append(node)
        self._wait_started(node)
        return node

    def _wait_started(self, node: RayNode, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {node.log.read_text()[-2000:]}")
            if "Ray runtime started" in node.log.read_text(errors="replace"):
                self._seen.extend(node.processes())
                return
            time.sleep(0.3)
        raise TimeoutError(f"{node.name} did not start: {node.log.read_text()[-2000:]}")

    def kill(self, node: RayNode) -> int:
        """SIGKILL the node's raylet (a machine lost, as the cluster sees it); its
        `ray start` then exits and takes the node's other processes with it."""
        raylet = node.raylet()
        self._seen.extend(node.processes())
        raylet.kill()
        if node.cgroup is not None:  # once its `ray start` took the rest down (or `stop`)
            node.cgroup.remove(wait_s=10)
        return raylet.pid

    def stop(self) -> None:
        """Stop every process of every node this cluster started (and nothing else).
        SIGKILL at once: the cluster is thrown away, nothing in it needs an orderly end
        (a SIGTERM could keep the test waiting for seconds)."""
        procs = {p.pid: p for p in self._seen}
        for node in self.nodes:
            procs.update({p.pid: p for p in node.processes()})
        for node in reversed(self.nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(list(procs.values()), timeout=5)
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=5)
            if node.cgroup is not None:
                node.cgroup.remove(wait_s=5)

    def probe(self) -> dict[str, Any]:
        """Nodes and named/Serve actors, from a driver process of its own."""
        out = subprocess.run(
            [sys.executable, "-m", "tests.utils.ray_nodes", "probe", self.address],
            capture_output=True,
            text=True,
            timeout=120,
            env=driver_env(),
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def _probe(address: str) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    nodes = [
        {
            "id": n["NodeID"],
            "alive": n["Alive"],
            "node_manager_port": n["NodeManagerPort"],
            "resources": n.get("Resources") or {},
        }
        for n in ray.nodes()
    ]
    actors = [
        {
            "name": a.get("Name") or "",
            "class": a.get("ActorClassName") or "",
            "state": a.get("State"),
            "node": (a.get("Address") or {}).get("NodeID"),
            "pid": a.get("Pid"),
        }
        for a in ray._private.state.actors().values()  # noqa: SLF001 - no dashboard here
    ]
    print(json.dumps({"nodes": nodes, "actors": actors}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        _probe(sys.argv[2])


@dataclass
class Deployed:
    """`lumalive up --detach` on a `LocalCluster` (its own process, data dir, ports and
    embedded Postgres), with what a client needs: the API, the RTMP port, a superuser
    DSN to read the rows, and a token (the API creates its user on first sight)."""

    env: dict[str, str]
    data_dir: Path
    api: str
    rtmp_port: int
    dsn: str
    token: str
    _pg: Any = None

    def log(self) -> str:
        log = self.data_dir / "lumalive.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def down(self) -> None:
        """`lumalive down` (the driver and the embedded Postgres; the cluster is the
        caller's to stop)."""
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.stop()
            self._pg = None
        with contextlib.suppress(Exception):
            cli(self.env, "down", timeout=150)


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def deploy(cluster: LocalCluster, data_dir: Path, **settings_env: str) -> Deployed:
    """`lumalive up --detach` with `RAY_ADDRESS` = the cluster and these LUMALIVE_* settings.
    Raises if it did not come up (with its log)."""
    import uuid

    from cluster.postgres import EmbeddedPostgres
    from lumalive.auth import TokenService

    api_port, rtmp_port = free_ports(2)
    env = driver_env(
        RAY_ADDRESS=cluster.address,
        LUMALIVE_DATA_DIR=str(data_dir),
        LUMALIVE_API_PORT=str(api_port),
        LUMALIVE_RTMP_PORT=str(rtmp_port),
        **settings_env,
    )
    env.pop("DATABASE_URL", None)
    deployed = Deployed(env, data_dir, f"http://127.0.0.1:{api_port}", rtmp_port, "", "")
    up = cli(env, "up", "--detach")
    if up.returncode != 0:
        deployed.down()
        raise RuntimeError(f"lumalive up failed: {up.stdout}{up.stderr}{deployed.log()}")
    # A handle on the embedded Postgres `up` started (pgserver shares it), for its URL.
    deployed._pg = EmbeddedPostgres(data_dir / "pg")
    deployed.dsn = deployed._pg.start().replace("postgresql+psycopg://", "postgresql://", 1)
    secret = (data_dir / "jwt_secret").read_text().strip()
    deployed.token = TokenService(secret, "authenticated").issue(uuid.uuid4(), 3600)
    return deployed
