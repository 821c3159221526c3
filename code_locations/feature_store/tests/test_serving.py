"""The analyzer's feature server: reads answer with gold's values, writes are not served."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from data_platform_dev.stack.processes import ManagedProcess, free_port, wait_until
from feature_store.demo_summary import summary

README = Path(__file__).resolve().parents[3] / "README.md"
README_SERVER = "127.0.0.1:6566"


def readme_curls() -> list[str]:
    """The curl commands of README's bash blocks that call the feature server."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [block for block in blocks if block.startswith("curl") and README_SERVER in block]


@pytest.fixture
def feature_server(feast_env, run_feature_store, tmp_path) -> Iterator[str]:
    assert run_feature_store().success
    port = free_port()
    server = ManagedProcess(
        "feature-server",
        [sys.executable, "-m", "feature_store.serving", "--port", str(port)],
        log_path=tmp_path / "feature-server.log",
        env={**os.environ, **feast_env.environ},
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/health").status_code == 200, "feature server", 120, server
        )
        yield url
    finally:
        server.stop()


def test_feature_server_serves_reads_only(feature_server, gold_expected):
    expected = gold_expected()
    users = sorted(expected)[:3]
    response = httpx.post(
        f"{feature_server}/get-online-features",
        json={
            "features": ["user_journal_features:minutes_30d", "user_journal_features:avg_mood_30d"],
            "entities": {"user_id": users},
        },
    )
    assert response.status_code == 200
    body = response.json()
    columns = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    assert columns["minutes_30d"]["values"] == [expected[u]["minutes_30d"] for u in users]
    assert columns["avg_mood_30d"]["values"] == [expected[u]["avg_mood_30d"] for u in users]
    for write in ("/push", "/write-to-online-store", "/materialize", "/materialize-incremental"):
        assert httpx.post(f"{feature_server}{write}", json={}).status_code == 404, write


def test_demo_summary_reads_back_through_feast(run_feature_store, gold, gold_expected):
    """What `make demo` prints for this location (data_platform_dev.stack.demo calls summary())."""
    assert run_feature_store().success
    printed = summary()
    expected = gold_expected()
    assert printed["features_materialized"] == {
        "game_type_stats": len(gold.latest("game_type_stats", "game_type_id")),
        "user_journal_features": len(expected),
    }
    first_three = sorted(expected)[:3]
    assert printed["online_features"] == {str(u): expected[u] for u in first_three}


def test_readme_curl_runs_verbatim(feature_server, gold, gold_expected):
    """README's curl for the analyzer, run by bash as written (only the port differs)."""
    (command,) = readme_curls()
    address = feature_server.removeprefix("http://")
    done = subprocess.run(
        ["bash", "-c", command.replace(README_SERVER, address)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = json.loads(done.stdout)
    assert "detail" not in body, body
    columns = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    users, games = [1, 2], [1, 2]
    assert columns["user_id"]["values"] == users
    expected = gold_expected()
    assert columns["minutes_30d"]["values"] == [expected[u]["minutes_30d"] for u in users]
    assert columns["entries_30d"]["values"] == [expected[u]["entries_30d"] for u in users]
    stats = gold.latest("game_type_stats", "game_type_id")
    assert columns["game_type_entries_30d"]["values"] == [stats[g]["entries_30d"] for g in games]
    assert set(columns["entries_30d"]["statuses"]) == {"PRESENT"}


def test_server_tuning_defaults_and_overrides(monkeypatch):
    """What the local stack and the chart start: a worker per CPU unless told, registry every
    10 s."""
    from feature_store.serving.server import default_workers, parse_args, uvicorn_settings

    monkeypatch.delenv("FEATURE_SERVER_WORKERS", raising=False)
    args = parse_args([])
    assert (args.workers, args.registry_ttl, args.host) == (default_workers(), 10, "127.0.0.1")
    settings = uvicorn_settings(args)
    assert (
        settings["timeout_keep_alive"] > 60 and settings["factory"] and not settings["access_log"]
    )
    assert (settings["http"], settings["loop"]) == ("httptools", "uvloop")
    monkeypatch.setenv("FEATURE_SERVER_WORKERS", "3")
    assert parse_args([]).workers == 3
    assert parse_args(["--workers", "2"]).workers == 2
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])


@pytest.mark.parametrize(
    ("affinity", "cgroup_v2", "cgroup_v1", "workers"),
    [
        (8, None, None, 4),  # no container limit: every CPU, at most 4 (each holds Feast)
        (2, None, None, 2),
        (1, None, None, 1),
        (8, "max 100000", None, 4),
        (8, "200000 100000", None, 2),  # a 2-CPU limit on an 8-CPU node
        (8, "150000 100000", None, 1),  # whole CPUs only
        (8, "50000 100000", None, 1),  # half a CPU still runs one
        (2, "400000 100000", None, 2),  # the limit above the CPUs it may run on
        (8, None, ("300000", "100000"), 3),  # cgroup v1
        (8, None, ("-1", "100000"), 4),
        (8, "garbage", None, 4),
    ],
)
def test_workers_default_to_the_cpus_the_server_may_use(
    monkeypatch, tmp_path, affinity, cgroup_v2, cgroup_v1, workers
):
    from feature_store.serving import server

    monkeypatch.setattr(server.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    cpu_max, v1 = tmp_path / "cpu.max", tmp_path / "cpu"
    if cgroup_v2 is not None:
        cpu_max.write_text(cgroup_v2 + "\n")
    if cgroup_v1 is not None:
        v1.mkdir()
        (v1 / "cpu.cfs_quota_us").write_text(cgroup_v1[0] + "\n")
        (v1 / "cpu.cfs_period_us").write_text(cgroup_v1[1] + "\n")
    assert server.default_workers(cpu_max, v1) == workers
