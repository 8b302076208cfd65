"""`lumalive capacity` (cluster/capacity.py): the real CLI, and the arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cluster import capacity
from lumalive.settings import Settings
from tests.utils.cli import run_cli

# The CLI needs no database; run_cli wants a URL all the same (never connected to).
SETTINGS = Settings(database_url="postgresql://unused@127.0.0.1:1/unused")


def test_the_cli_prints_needs_and_carried_streams_with_the_benchmarks_rates(tmp_path: Path):
    rates = tmp_path / "tiers.json"
    rates.write_text(
        json.dumps(
            {
                "8K": {
                    "encode_fps_per_core": 1.5,
                    "enhance_fps_per_core": None,  # missing: the default, with its source
                    "enhance_fps_per_gpu": 10.0,
                    "measured_on": "test box",
                    "date": "2026-11-27",
                }
            }
        )
    )
    out = run_cli(
        SETTINGS,
        *("capacity", "--tier", "8K", "--ai", "--fps", "30", "--nodes", "2x16:1,1x8"),
        *("--rates", str(rates)),
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "needs 20 CPU cores and 3 GPUs" in text  # 30/1.5 = 20 cores, 30/10 = 3 GPUs
    assert "tiers.json: test box, 2026-11-27" in text
    assert "a cluster of 40 CPUs and 2 GPUs carries 0 such streams (limited by GPU)" in text


def test_without_a_rates_file_the_defaults_print_their_sources(tmp_path: Path):
    out = run_cli(
        SETTINGS,
        *("capacity", "--tier", "4K", "--cpus", "64", "--rates", str(tmp_path / "none.json")),
    )
    assert out.returncode == 0, out.stderr
    default = capacity.DEFAULT_RATES["4K"]["encode_fps_per_core"]
    cores = 30 / default.value
    assert f"needs {math.ceil(cores)} CPU cores" in out.stdout
    assert default.source in out.stdout
    assert f"carries {math.floor(64 / cores)} such streams (limited by CPU)" in out.stdout


def test_bad_cluster_figures_are_refused():
    out = run_cli(SETTINGS, "capacity", "--tier", "8K", "--nodes", "2xmany")
    assert out.returncode == 2 and "lumalive capacity:" in out.stderr


def test_ai_without_gpus_counts_enhancement_on_cores_and_big_segments_need_big_nodes():
    rates = capacity.load_rates(None)
    with_gpu = capacity.need("4K", 30, True, rates)
    without = capacity.need("4K", 30, True, rates, gpu=False)
    assert with_gpu.gpus > 0 and without.gpus == 0 and without.cpus > with_gpu.cpus
    small_nodes = capacity.parse_nodes("100x2")
    n, why = capacity.carried(capacity.need("8K", 30, False, rates), small_nodes)
    assert n == 0 and "CPUs one segment takes" in why


@pytest.mark.parametrize("tier", sorted(capacity.DEFAULT_RATES))
def test_every_tier_has_every_default_rate(tier: str):
    rates = capacity.DEFAULT_RATES[tier]
    assert all(rates[f].value > 0 and rates[f].source for f in capacity._FIELDS)
