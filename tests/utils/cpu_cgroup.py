"""A CPU cap on a process tree: its own cgroup v1 `cpu` group (CFS quota), entered by
the tree's first process before it `exec`s, so everything it forks inherits the cap.

Why: several Ray nodes on one machine share its cores, so a node count above the free
cores measures the machine, not Ray (`bench.scale_out --cpu-quota`). A node capped at
Q cores gets what a machine of Q cores would give it, as long as the caps together
stay under the machine's free cores; `usage_s` (the node's `cpuacct` group, when that
controller is mounted) and `throttled` tell afterwards whether they did.

Invariants:
- Only groups this module created are written or removed, and only under the
  controller roots below (never `/`, never another group's processes).
- A group is removed (rmdir) only once its processes are gone: the caller kills them.
- No fallback: where the controller is not writable (not root, cgroup v2 only),
  `CpuCap.create` raises `CgroupUnavailable` and nothing runs uncapped in its place.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CPU_ROOT", "CPUACCT_ROOT", "CgroupUnavailable", "CpuCap"]

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")


class CgroupUnavailable(RuntimeError):
    """The cgroup v1 cpu controller cannot be written here: the cap cannot be applied."""


@dataclass
class CpuCap:
    """One cgroup named `name` in the cpu controller (and in cpuacct, when mounted
    apart, for the group's CPU time), quota = `cores` x the CFS period."""

    name: str
    cores: float
    dirs: tuple[Path, ...]

    @classmethod
    def create(cls, name: str, cores: float, option: str = "cpu_quota") -> CpuCap:
        if cores <= 0:
            raise ValueError(f"{option}={cores}: must be > 0 cores")
        cpu = CPU_ROOT / name
        try:
            cpu.mkdir()
            period = int((cpu / "cpu.cfs_period_us").read_text())
            (cpu / "cpu.cfs_quota_us").write_text(str(max(1000, round(cores * period))))
        except OSError as e:
            with contextlib.suppress(OSError):
                cpu.rmdir()
            raise CgroupUnavailable(
                f"{option}={cores} needs a writable cgroup v1 cpu controller at {CPU_ROOT}"
                f" (root, cgroup v1): {e}"
            ) from e
        dirs = [cpu]
        if (CPUACCT_ROOT / "cpuacct.usage").exists() and not (cpu / "cpuacct.usage").exists():
            with contextlib.suppress(OSError):  # the usage figure only; the cap holds
                (CPUACCT_ROOT / name).mkdir()
                dirs.append(CPUACCT_ROOT / name)
        return cls(name, cores, tuple(dirs))

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` run by a shell that first moves itself into the group, then `exec`s:
        the command (and all it forks) starts inside it; if the move fails, it exits
        instead of running uncapped."""
        enter = "".join(f"echo $$ > {d}/cgroup.procs && " for d in self.dirs)
        return ["sh", "-c", f'{enter}exec "$@"', "sh", *cmd]

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]
        return []

    def usage_s(self) -> float | None:
        """CPU seconds the group's processes used so far (None without cpuacct)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                return int((d / "cpuacct.usage").read_text()) / 1e9
        return None

    def throttled(self) -> tuple[int, int]:
        """(CFS periods, periods in which the group was throttled) so far."""
        stat = dict(
            line.split()
            for line in (self.dirs[0] / "cpu.stat").read_text().splitlines()
            if len(line.split()) == 2
        )
        return int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))

    def remove(self, wait_s: float = 10.0) -> bool:
        """rmdir the group once its processes are gone (waits up to `wait_s`);
        False if some are still there (the caller kills them and tries again)."""
        deadline = time.monotonic() + wait_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        removed = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed
