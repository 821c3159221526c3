"""End to end on the local stack, the way a user drives it: `make demo`, then `make dev`.

The demo launches only ingestion; the transformation and feature-store runs must follow by
themselves. Then `dev` on the same state shows those runs in the UI's GraphQL API, serves
the features from the feature server (Redis kept them across the restart) equal to gold, and
a Ctrl-C (SIGINT to the process group, as a terminal sends it) leaves no port of the stack
open.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from data_platform.locations import LOCATIONS
from data_platform_dev.stack.processes import free_port, port_answers

pytestmark = pytest.mark.stack

USERS, ENTRIES = 200, 6_000


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ports = {
        "PLATFORM_POSTGRES_PORT": free_port(),
        "PLATFORM_REDIS_PORT": free_port(),
        "PLATFORM_JOURNAL_API_PORT": free_port(),
        "PLATFORM_WEBSERVER_PORT": free_port(),
        "PLATFORM_FEATURE_SERVER_PORT": free_port(),
    }
    state = tmp_path_factory.mktemp("stack")
    return {**os.environ, **{k: str(v) for k, v in ports.items()}, "STATE_DIR": str(state)}


def stack_command(env: dict[str, str], *args: str) -> list[str]:
    return [
        sys.executable, "-m", "data_platform_dev.stack", *args,
        "--state-dir", env["STATE_DIR"], "--users", str(USERS), "--entries", str(ENTRIES),
    ]  # fmt: skip


def stack_ports(env: dict[str, str]) -> list[int]:
    named = [int(v) for k, v in env.items() if k.startswith("PLATFORM_") and k.endswith("_PORT")]
    return named + [loc.port for loc in LOCATIONS]


def latest_gold(env: dict[str, str], users: list[int]) -> dict[int, tuple]:
    secrets = dict(
        line.split("=", 1)
        for line in Path(env["STATE_DIR"], "secrets.env").read_text().splitlines()
    )
    with psycopg.connect(
        host="127.0.0.1",
        port=int(env["PLATFORM_POSTGRES_PORT"]),
        user="platform",
        password=secrets["POSTGRES_PASSWORD"],
        dbname="warehouse",
    ) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (user_id) user_id, entries_30d, favorite_game_type "
            "FROM gold.user_journal_features WHERE user_id = ANY(%s) "
            "ORDER BY user_id, feature_date DESC",
            [users],
        ).fetchall()
    return {user: (entries, favorite) for user, entries, favorite in rows}


def test_demo_runs_the_pipeline_and_prints_one_json_line(stack_env):
    result = subprocess.run(
        stack_command(stack_env, "demo"), env=stack_env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["raw_rows"] == {
        "raw.users": USERS,
        "raw.game_types": 12,
        "raw.journal_entries": ENTRIES,
    }
    assert any("launched ingest_journal_app_job" in line for line in lines)
    for location in LOCATIONS[1:]:  # every downstream location ran by automation
        assert any(f"{location.name}: run" in line and "SUCCESS" in line for line in lines), lines
    assert not [port for port in stack_ports(stack_env) if port_answers(port)]


def test_dev_shows_the_demo_runs_and_ctrl_c_stops_everything(stack_env):
    process = subprocess.Popen(
        stack_command(stack_env, "dev"),
        env=stack_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell job in a terminal
    )
    ui = f"http://127.0.0.1:{stack_env['PLATFORM_WEBSERVER_PORT']}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if port_answers(int(stack_env["PLATFORM_WEBSERVER_PORT"])):
                try:
                    if httpx.get(f"{ui}/server_info", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(1)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        query = "{ runsOrError { ... on Runs { results { runId status repositoryOrigin { repositoryLocationName } } } } }"
        runs = httpx.post(f"{ui}/graphql", json={"query": query}, timeout=30).json()["data"]
        locations = {
            r["repositoryOrigin"]["repositoryLocationName"]
            for r in runs["runsOrError"]["results"]
            if r["status"] == "SUCCESS"
        }
        assert locations == {loc.name for loc in LOCATIONS}

        # the analyzer's view: features served after a restart (Redis kept them) equal gold
        users = [1, 2, 3]
        served = httpx.post(
            f"http://127.0.0.1:{stack_env['PLATFORM_FEATURE_SERVER_PORT']}/get-online-features",
            json={
                "features": [
                    "user_journal_features:entries_30d",
                    "user_journal_features:favorite_game_type",
                ],
                "entities": {"user_id": users},
            },
            timeout=60,
        ).json()
        columns = dict(zip(served["metadata"]["feature_names"], served["results"], strict=True))
        gold = latest_gold(stack_env, users)
        assert columns["entries_30d"]["values"] == [gold[u][0] for u in users]
        assert columns["favorite_game_type"]["values"] == [gold[u][1] for u in users]
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    assert "no port of the stack is in use" in output
    assert not [port for port in stack_ports(stack_env) if port_answers(port)]
    assert not Path(stack_env["STATE_DIR"], "stack.pid").exists()
