"""A short `make soak`: 3 cycles of upstream changes with 3 faults of 3 kinds through the real
local stack (every port a free one, state in a temp dir), then every layer compared: raw with
the upstream, gold with a --full-refresh build, Redis with gold, the exports with gold.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_local_stack import stack_environment, state_dir

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[1]
KEYS = {
    "cycles",
    "faults",
    "rows_compared",
    "raw_mismatches",
    "gold_mismatches",
    "online_mismatches",
    "export_mismatches",
    "seconds",
}


def test_short_soak_converges_with_every_layer_equal() -> None:
    with state_dir() as state:
        env = stack_environment(state)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "data_platform_dev.soak",
                *("--cycles", "3", "--min-faults", "3", "--seed", os.environ.get("SOAK_SEED", "5")),
                *("--users", "60", "--entries", "1500", "--changes", "8"),
                *("--cycle-timeout", "150", "--state-dir", str(state / "stack")),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    output = done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, output[-5000:]
    result = json.loads(lines[-1])  # the last line is the JSON object
    assert result.keys() >= KEYS, result
    assert result["cycles"] == 3
    assert sum(result["faults"].values()) == 3 and len(result["faults"]) == 3, result["faults"]
    assert result["rows_compared"] > 1_000, result
    mismatches = {k: v for k, v in result.items() if k.endswith("_mismatches")}
    assert mismatches == dict.fromkeys(mismatches, 0), output[-6000:]
    assert done.returncode == 0, output[-5000:]
