"""`up` refuses a taken port before it starts anything; `down` leaves no process behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psutil
import pytest

from cluster.processes import Port, PortInUseError, check_free, descendants, reap


def test_a_taken_port_is_named_with_the_setting_that_moves_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as err:
            check_free([Port("API", "127.0.0.1", port, "LUMALIVE_API_PORT")])
    assert f"127.0.0.1:{port}" in str(err.value) and "LUMALIVE_API_PORT" in str(err.value)
    check_free([Port("API", "127.0.0.1", port, "LUMALIVE_API_PORT")])  # free again


def test_reap_stops_a_tree_including_a_child_that_ignores_sigterm() -> None:
    # A shell whose child ignores SIGTERM, as a stuck agent would.
    shell = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "time.sleep(60)\n",
        ],
    )
    deadline = time.monotonic() + 10
    while (
        len(tree := [p for p in descendants() if p.pid == shell.pid or p.ppid() == shell.pid]) < 2
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert len(tree) == 2, tree
    stopped = reap(tree, timeout_s=1.0)
    assert sorted(stopped) == sorted(p.pid for p in tree)
    shell.wait(timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
