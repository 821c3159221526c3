"""The data benchmarks run through make, as README says, at small sizes, and end with the JSON
line issue 12 names. Not timed: speed is what the benchmarks print, on a quiet machine; this
checks that they run, measure what they say, and report every key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def make_bench(target: str, args: str) -> dict[str, Any]:
    """`make <target> ARGS=...` in its own process; its last line, parsed."""
    completed = subprocess.run(
        ["make", "--no-print-directory", target, f"ARGS={args}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "FEATURE_SERVER_WORKERS": "1"},
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"make {target} failed:\n{output[-4000:]}"
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert lines, f"make {target} printed no JSON line:\n{output[-4000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
def test_bench_transform_prints_a_curve_of_full_and_incremental_builds() -> None:
    result = make_bench("bench-transform", "--entries 10000,20000 --users 1000")
    assert [point["entries"] for point in result["curve"]] == [10_000, 20_000]
    for point in result["curve"]:
        assert point["new_entries"] == point["entries"] // 100
        assert point["incremental_s"] > 0 and point["full_s"] > 0
        assert point["ratio"] == pytest.approx(point["incremental_s"] / point["full_s"], abs=0.01)
        assert point["same_day_ratio"] == pytest.approx(
            point["incremental_same_day_s"] / point["full_s"], abs=0.01
        )
    assert {"full_s", "incremental_s", "ratio", "incremental_same_day_s"} <= result.keys()


@pytest.mark.timeout(900)
def test_bench_ingest_compares_with_copy() -> None:
    result = make_bench("bench-ingest", "--entries 20000 --repeats 1")
    assert result["rows"] == 20_000
    assert result["ratio_to_binary_copy"] == pytest.approx(
        result["binary_copy_seconds"] / result["ingest_seconds"], rel=0.05
    )


@pytest.mark.timeout(900)
def test_bench_features_materializes_only_changed_users_and_reads_them() -> None:
    result = make_bench("bench-features", "--entries 20000 --reads 20 --seconds 1")
    assert result["users"] == 2_000 and result["gold_rows"] > 0
    # 1% of users changed: only they are written again, the rest restamped
    assert 0 < result["incremental_written"] < result["users"] // 10
    for key in (
        "materialize_ratio_to_raw",
        "read_1_feature_server_p99_ms",
        "read_100_feature_server_p99_ms",
        "read_100_feature_server_httpx_p99_ms",
        "read_1_feast_sdk_p99_ms",
        "read_100_raw_redis_p99_ms",
        "concurrent_rps",
        "concurrent_p99_ms",
    ):
        assert result[key] > 0, key
    assert result["concurrent_client"] in {"wrk", "aiohttp"}
    for quantile in ("p50", "p99"):
        assert result[f"read_100_server_to_raw_{quantile}"] == pytest.approx(
            result[f"read_100_feature_server_{quantile}_ms"]
            / result[f"read_100_raw_redis_{quantile}_ms"],
            abs=0.02,
        )
