"""A short `make soak`: 3 cycles of upstream changes with 3 faults of 3 kinds through the real
local stack (every port a free one, state in a temp dir), then every layer compared: raw with
the upstream, gold with a --full-refresh build, Redis with gold, the exports with gold.
"""

import collections
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
    planned = collections.Counter(result["faults"]) + collections.Counter(result["faults_missed"])
    assert len(planned) == 3 and sum(planned.values()) == 3, result  # three kinds planned
    assert sum(result["faults"].values()) >= 2, result  # a run may end before its fault hits
    assert result["rows_compared"] > 1_000, result
    mismatches = {k: v for k, v in result.items() if k.endswith("_mismatches")}
    assert mismatches == dict.fromkeys(mismatches, 0), _story(output)
    assert done.returncode == 0, output[-5000:]


def _story(output: str, examples: int = 8) -> str:
    """The soak's progress lines (runs, faults, waits) and a few of its mismatches: the
    mismatches alone fill any tail of the output and hide what led to them."""
    lines = output.splitlines()
    found = [line for line in lines if "mismatch:" in line]
    progress = [line for line in lines if "mismatch:" not in line]
    return "\n".join([*progress[-80:], *found[:examples], f"({len(found)} mismatch lines)"])


def test_fault_plan_covers_every_kind_and_the_minimum() -> None:
    import random

    from data_platform_dev.soak import FAULT_KINDS, plan_faults

    for seed in range(20):
        plan = plan_faults(random.Random(seed), 20, 0.3, 10)
        assert sum(f is not None for f in plan) >= 10
        assert set(FAULT_KINDS) <= set(plan)
        short = plan_faults(random.Random(seed), 3, 0.0, 3)
        assert len({f for f in short if f}) == 3  # three cycles, three kinds


def test_comparisons_count_missing_extra_and_changed_rows() -> None:
    from data_platform_dev.soak import multiset_difference

    left = [(1, "a"), (2, "b"), (2, "b"), (3, None)]
    right = [(1, "a"), (2, "b"), (3, 0.5), (4, "d")]
    diff = multiset_difference(left, right)
    assert sorted(diff, key=str) == sorted(
        [("only left", (2, "b")), ("only left", (3, None)), ("only right", (3, 0.5)),
         ("only right", (4, "d"))],
        key=str,
    )  # fmt: skip
    assert multiset_difference(left, list(reversed(left))) == []


def test_upstream_moves_an_entry_to_another_user_and_day(start_journal_api) -> None:
    """The soak's moved and late entries: a new version on another user, days earlier."""
    from datetime import datetime

    import httpx

    api = start_journal_api(users=5, entries=50)
    before = httpx.get(f"{api.url}/api/v1/journal_entries", params={"limit": 100}).json()["data"]
    entry = next(row for row in before if row["id"] == 7)
    other = 1 if entry["user_id"] != 1 else 2
    moved = api.move(7, user_id=other, days=-2)
    assert moved["user_id"] == other
    shift = datetime.fromisoformat(entry["created_at"]) - datetime.fromisoformat(
        moved["created_at"]
    )
    assert shift.days == 2
    after = httpx.get(f"{api.url}/api/v1/journal_entries", params={"limit": 100}).json()["data"]
    assert [row for row in after if row["id"] == 7] == [moved]
    assert moved["updated_at"] > entry["updated_at"]
    api.delete("users", other)
    with pytest.raises(httpx.HTTPStatusError):
        api.move(8, user_id=other)  # onto a deleted user: refused
    with pytest.raises(httpx.HTTPStatusError):
        api.admin("move", {"id": 8, "days": "soon"})
