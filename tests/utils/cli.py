"""Running `lumalive …` as an operator does: a separate process against the test system."""

from __future__ import annotations

import os
import subprocess
import sys

from lumalive.settings import Settings


def run_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m cluster.cli ARGS` with the system's database and data dir (plus `env`)."""
    assert settings.database_url
    environ = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "LUMALIVE_DATA_DIR": str(settings.data_dir),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
