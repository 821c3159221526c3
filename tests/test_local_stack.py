"""End to end on the local stack, the way a user drives it: `make demo`, then
`make dev` run through make, in its own process group, as a terminal runs it.

The demo launches only ingestion; the transformation and feature-store runs must follow by
themselves, each location connected as its team's Postgres role (the Kubernetes grants): what
they created is owned by their role, and no role can write another team's schema. Then
`make dev` on the same state shows those runs in the UI's GraphQL API and
serves the features (Redis kept them across the restart) equal to gold; a code server and
the feature server killed with SIGKILL come back (a run launched afterwards succeeds); and a
Ctrl-C (SIGINT to the whole process group: make, `uv run`, the supervisor) stops everything
within 30 s with no traceback, no process and no port left. Every port is a free one, so
this runs beside a `make dev` on the default ports.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient
from data_platform.locations import INGESTION, LOCATIONS
from data_platform_dev.journal_api.process import JournalApiProcess
from data_platform_dev.stack.bench import stack_environment
from data_platform_dev.stack.cli import ROLE_PASSWORD_KEYS
from data_platform_dev.stack.postgres import LOCATION_TEAMS, LocalPostgres, team_roles
from data_platform_dev.stack.processes import (
    ManagedProcess,
    ProcessRecord,
    StackError,
    free_port,
    port_answers,
)
from data_platform_dev.stack.supervision import RestartPolicy, Service, supervise_once

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[1]
USERS, ENTRIES = 200, 6_000
SIZE_ARGS = f"--users {USERS} --entries {ENTRIES}"
STOP_WITHIN = 30.0
WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


@contextlib.contextmanager
def state_dir() -> Iterator[Path]:
    # not under pytest's basetemp: another pytest session may prune or chmod it meanwhile
    path = Path(tempfile.mkdtemp(prefix="platform-stack-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack_env() -> Iterator[dict[str, str]]:
    with state_dir() as path:
        yield stack_environment(path)


def stack_ports(env: dict[str, str]) -> list[int]:
    return [int(v) for k, v in env.items() if k.startswith("PLATFORM_") and k.endswith("_PORT")]


def ui(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['PLATFORM_WEBSERVER_PORT']}"


class MakeDev:
    """`make dev` as a terminal runs it: its own session and process group, output kept."""

    def __init__(self, env: dict[str, str], args: str = SIZE_ARGS) -> None:
        self.env = env
        self.log = Path(env["STATE_DIR"], "make-dev.log")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["make", "dev", f"ARGS={args}"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.records: dict[int, ProcessRecord] = {}

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output):
                return match
            assert self.process.poll() is None, f"make dev exited:\n{self.output[-4000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} after {timeout:.0f} s:\n{self.output[-4000:]}")

    def recorded(self) -> dict[str, ProcessRecord]:
        """The supervisor's record of its processes; kept, to check them after the stop."""
        path = Path(self.env["STATE_DIR"], "processes.json")
        records = [ProcessRecord.from_json(item) for item in json.loads(path.read_text())]
        self.records |= {r.pid: r for r in records}
        return {r.name: r for r in records}

    def interrupt(self, times: int = 1) -> float:
        """Ctrl-C: SIGINT to the whole group, ``times`` times 1 s apart; seconds to exit."""
        self.recorded()
        started = time.monotonic()
        for _ in range(times):
            os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1)
        self.process.wait(60)
        return time.monotonic() - started

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        subprocess.run(["make", "stop"], cwd=REPO, env=self.env, capture_output=True, timeout=120)

    def left_behind(self) -> list[str]:
        """Processes of the stack still alive: in make's group or session, recorded by the
        supervisor (same pid and start time), or started with this stack's DAGSTER_HOME."""
        home = f"DAGSTER_HOME={Path(self.env['STATE_DIR']).resolve()}/dagster_home".encode()
        group = self.process.pid
        alive = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            if process.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error, OSError):
                ours = group in (os.getpgid(process.pid), os.getsid(process.pid))
                ours = ours or home in Path(f"/proc/{process.pid}/environ").read_bytes()
                if ours and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        alive += [f"{r.pid} {r.name}" for r in self.records.values() if r.is_running()]
        return alive

    def assert_stopped_cleanly(self, seconds: float) -> None:
        print(f"make dev stopped {seconds:.1f} s after the first SIGINT")  # shown with -s
        output = self.output
        assert seconds < STOP_WITHIN, f"stopped in {seconds:.1f} s:\n{output[-3000:]}"
        assert "Traceback" not in output, output[-5000:]
        # the supervisor exits 0; make, interrupted itself, then ends by the same signal
        assert self.process.returncode in (0, -signal.SIGINT), self.process.returncode
        assert not re.search(r"make(\[\d+\])?: \*\*\*", output), output[-3000:]
        assert "no port of the stack is in use" in output, output[-3000:]
        assert not self.left_behind()
        assert not [port for port in stack_ports(self.env) if port_answers(port)]
        assert not Path(self.env["STATE_DIR"], "processes.json").exists()


@contextlib.contextmanager
def make_dev(env: dict[str, str], args: str = SIZE_ARGS) -> Iterator[MakeDev]:
    """`make dev`, up; a test that fails leaves no stack behind."""
    dev = MakeDev(env, args)
    try:
        dev.wait_for(r"\[stack\] stack up in")
        yield dev
    finally:
        if dev.process.poll() is None:
            dev.kill()


@pytest.fixture
def small_stack() -> Iterator[MakeDev]:
    """`make dev` serving only ingestion: what the stop checks need, in half the time."""
    with state_dir() as state:
        env = stack_environment(state)
        with make_dev(env, f"--locations {INGESTION.name} {SIZE_ARGS}") as dev:
            yield dev


def graphql(env: dict[str, str], query: str) -> dict:
    response = httpx.post(f"{ui(env)}/graphql", json={"query": query}, timeout=60)
    return response.raise_for_status().json()["data"]


def location_status(env: dict[str, str], name: str) -> tuple[str, str]:
    entries = graphql(env, WORKSPACE)["workspaceOrError"]["locationEntries"]
    entry = next(e for e in entries if e["name"] == name)
    return entry["loadStatus"], entry["locationOrLoadError"]["__typename"]


def stack_secrets(env: dict[str, str]) -> dict[str, str]:
    """The passwords the stack generated (its secrets.env)."""
    lines = Path(env["STATE_DIR"], "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def latest_gold(env: dict[str, str], users: list[int]) -> dict[int, tuple]:
    secrets = stack_secrets(env)
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


def online_features(env: dict[str, str], users: list[int]) -> dict[str, dict]:
    served = httpx.post(
        f"http://127.0.0.1:{env['PLATFORM_FEATURE_SERVER_PORT']}/get-online-features",
        json={
            "features": [
                "user_journal_features:entries_30d",
                "user_journal_features:favorite_game_type",
            ],
            "entities": {"user_id": users},
        },
        timeout=60,
    ).json()
    return dict(zip(served["metadata"]["feature_names"], served["results"], strict=True))


def wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    status = client.get_run_status(run_id).value
    while status not in {"SUCCESS", "FAILURE", "CANCELED"} and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_run_status(run_id).value
    return status


@pytest.fixture(scope="module")
def demo(stack_env) -> subprocess.CompletedProcess[str]:
    """`make demo` as README says, through make (STATE_DIR and the ports from the env)."""
    return subprocess.run(
        ["make", "demo", f"ARGS={SIZE_ARGS}"],
        cwd=REPO,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_demo_runs_the_pipeline_and_prints_one_json_line(demo, stack_env):
    result = demo
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


# team (postgres.teamRoles) -> (database, statement) it must be refused, on the demo's data
REFUSED = {
    "ingestion": [
        (
            "warehouse",
            "INSERT INTO gold.user_journal_features SELECT * FROM gold.user_journal_features",
        ),
        ("warehouse", "CREATE TABLE gold.mine (id int)"),
        ("warehouse", "CREATE TABLE staging.mine (id int)"),
        ("warehouse", "SELECT count(*) FROM gold.user_journal_features"),
        ("warehouse", "CREATE TABLE public.mine (id int)"),
        ("feast_registry", "SELECT 1"),
        ("dagster", "SELECT 1"),
    ],
    "transformation": [
        ("warehouse", "INSERT INTO raw.users SELECT * FROM raw.users"),
        ("warehouse", "DELETE FROM raw.journal_entries"),
        ("warehouse", "CREATE TABLE raw.mine (id int)"),
        ("warehouse", "DROP TABLE raw.journal_entries"),
        ("feast_registry", "SELECT 1"),
        ("dagster", "SELECT 1"),
    ],
    "featureStore": [
        ("warehouse", "DELETE FROM gold.user_journal_features"),
        ("warehouse", "CREATE TABLE gold.mine (id int)"),
        ("warehouse", "SELECT count(*) FROM raw.journal_entries"),
        ("warehouse", "INSERT INTO raw.users SELECT * FROM raw.users"),
        ("warehouse", "CREATE SCHEMA mine"),
        ("dagster", "SELECT 1"),
    ],
    "instance": [("warehouse", "SELECT 1"), ("feast_registry", "SELECT 1")],
}
# ... and what it may do (each statement rolled back)
ALLOWED = {
    "ingestion": [("warehouse", "DELETE FROM raw.journal_entries")],
    "transformation": [
        ("warehouse", "SELECT count(*) FROM raw.journal_entries"),
        ("warehouse", "DELETE FROM gold.user_journal_features"),
    ],
    "featureStore": [
        ("warehouse", "SELECT count(*) FROM gold.user_journal_features"),
        ("feast_registry", "CREATE TABLE mine (id int)"),
    ],
    "instance": [("dagster", "SELECT count(*) FROM runs")],
}


def refused(port: int, role: str, password: str, database: str, statement: str) -> bool:
    """True when Postgres refuses ``statement`` to ``role``; a statement it allows is rolled back."""
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=role, password=password, dbname=database
        ) as conn:
            conn.execute(statement)
            conn.rollback()
    except psycopg.errors.InsufficientPrivilege:
        return True
    except psycopg.OperationalError as error:  # no CONNECT privilege on the database
        return "permission denied" in str(error)
    return False


def table_owners(port: int, password: str, database: str) -> dict[str, set[str]]:
    """schema -> the roles owning its tables and views (the roles that created them)."""
    with psycopg.connect(
        host="127.0.0.1", port=port, user="platform", password=password, dbname=database
    ) as conn:
        rows = conn.execute(
            "SELECT n.nspname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname IN ('public', 'raw', 'staging', 'gold')"
        ).fetchall()
    owners: dict[str, set[str]] = {}
    for schema, owner in rows:
        owners.setdefault(schema, set()).add(owner)
    return owners


def test_the_demo_ran_each_location_as_its_team_role_and_no_team_writes_another_teams(
    demo, stack_env
):
    """On the demo's state (one start, so the roles were there before any table): each table
    is owned by the role that created it, and each role is refused another team's schema."""
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    secrets = stack_secrets(stack_env)
    roles = team_roles()
    passwords = {team: secrets[key] for team, key in ROLE_PASSWORD_KEYS.items()}
    state = Path(stack_env["STATE_DIR"])
    port = int(stack_env["PLATFORM_POSTGRES_PORT"])
    server = LocalPostgres(
        state / "postgres", port, secrets["POSTGRES_PASSWORD"], state / "roles-check.log"
    )
    try:
        server.start()
        superuser = secrets["POSTGRES_PASSWORD"]
        assert table_owners(port, superuser, "warehouse") == {
            "raw": {roles["ingestion"]},
            "staging": {roles["transformation"]},
            "gold": {roles["transformation"]},
        }
        assert table_owners(port, superuser, "feast_registry") == {
            "public": {roles["featureStore"]}
        }
        assert table_owners(port, superuser, "dagster") == {"public": {roles["instance"]}}
        allowed = [
            f"{team} on {database}: {statement}"
            for team, attempts in REFUSED.items()
            for database, statement in attempts
            if not refused(port, roles[team], passwords[team], database, statement)
        ]
        assert allowed == []
        wrongly_refused = [
            f"{team} on {database}: {statement}"
            for team, attempts in ALLOWED.items()
            for database, statement in attempts
            if refused(port, roles[team], passwords[team], database, statement)
        ]
        assert wrongly_refused == []
        with psycopg.connect(server.url("warehouse")) as conn:  # the rollbacks kept the data
            assert conn.execute("SELECT count(*) FROM raw.journal_entries").fetchone() == (ENTRIES,)
    finally:
        server.stop()


def assert_each_process_has_its_teams_role(dev: MakeDev) -> None:
    """Code servers (whose runs inherit their environment) and the feature server hold their
    team's role; the webserver and the daemon the instance's only; none the superuser's."""
    secrets = stack_secrets(dev.env)
    roles = team_roles()
    expected = {f"code-server-{loc.name}": LOCATION_TEAMS[loc.name] for loc in LOCATIONS} | {
        "feature-server": "featureStore",
        "dagster-daemon": None,
        "dagster-webserver": None,
    }
    for name, record in dev.recorded().items():
        if name not in expected:
            continue
        raw = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        assert env["DAGSTER_PG_PASSWORD"] == secrets["DAGSTER_PG_PASSWORD"], name
        assert secrets["POSTGRES_PASSWORD"] not in env.values(), f"{name} has the superuser's"
        team = expected.pop(name)
        if team is None:
            assert "POSTGRES_PASSWORD" not in env, name
        else:
            assert env["POSTGRES_USER"] == roles[team], name
            assert env["POSTGRES_PASSWORD"] == secrets[ROLE_PASSWORD_KEYS[team]], name
    assert expected == {}, f"not running: {expected}"


def test_make_dev_shows_the_demo_runs_recovers_from_crashes_and_stops_on_ctrl_c(demo, stack_env):
    with make_dev(stack_env) as dev:
        assert_each_process_has_its_teams_role(dev)
        query = "{ runsOrError { ... on Runs { results { runId status repositoryOrigin { repositoryLocationName } } } } }"
        runs = graphql(stack_env, query)["runsOrError"]["results"]
        succeeded = {
            r["repositoryOrigin"]["repositoryLocationName"]
            for r in runs
            if r["status"] == "SUCCESS"
        }
        assert succeeded == {loc.name for loc in LOCATIONS}

        # the analyzer's view: features served after a restart (Redis kept them) equal gold
        users = [1, 2, 3]
        columns = online_features(stack_env, users)
        gold = latest_gold(stack_env, users)
        assert columns["entries_30d"]["values"] == [gold[u][0] for u in users]
        assert columns["favorite_game_type"]["values"] == [gold[u][1] for u in users]

        # a crashed container on Kubernetes restarts while the rest keeps running
        before = dev.recorded()
        crashed = ["code-server-ingestion", "feature-server"]
        for name in crashed:
            os.kill(before[name].pid, signal.SIGKILL)
        for name in crashed:
            dev.wait_for(
                rf"\[stack\] restarting {name} \(exited with code -9\), attempt 1/5 in 1\.0 s"
            )
        for name in crashed:
            dev.wait_for(rf"\[stack\] {name} is back", timeout=240)
        dev.wait_for(r"\[stack\] Dagster UI reloaded code location ingestion: LOADED")
        after = dev.recorded()
        assert all(after[n] != before[n] for n in crashed)  # new processes
        untouched = set(before) - {*crashed, "supervisor"}
        assert {n: after[n] for n in untouched} == {n: before[n] for n in untouched}
        assert location_status(stack_env, INGESTION.name) == ("LOADED", "RepositoryLocation")
        health = httpx.get(f"http://127.0.0.1:{stack_env['PLATFORM_FEATURE_SERVER_PORT']}/health")
        assert health.status_code == 200
        assert online_features(stack_env, users)["entries_30d"]["values"] == [
            gold[u][0] for u in users
        ]

        client = DagsterGraphQLClient(
            "127.0.0.1", port_number=int(stack_env["PLATFORM_WEBSERVER_PORT"])
        )
        run_id = client.submit_job_execution(
            "ingest_journal_app_job",
            repository_location_name=INGESTION.name,
            repository_name="__repository__",
        )
        status = wait_for_run(client, run_id)
        assert status == "SUCCESS", dev.output[-3000:]

        seconds = dev.interrupt()  # what one Ctrl-C in the terminal does, runs still in flight
        dev.assert_stopped_cleanly(seconds)


def test_a_second_ctrl_c_during_the_stop_does_not_abort_it(small_stack):
    seconds = small_stack.interrupt(times=2)
    small_stack.assert_stopped_cleanly(seconds)


def test_postgres_dying_stops_the_stack_with_a_message_naming_it(small_stack):
    dev = small_stack
    postgres = dev.recorded()["postgres"]
    started = time.monotonic()
    os.kill(postgres.pid, signal.SIGKILL)
    dev.process.wait(60)
    output = dev.output
    assert "Postgres exited with code -9" in output, output[-3000:]
    assert "the stack stops now" in output
    assert dev.process.returncode != 0
    assert time.monotonic() - started < STOP_WITHIN
    assert "Traceback" not in output, output[-5000:]
    assert not dev.left_behind()
    assert not [port for port in stack_ports(dev.env) if port_answers(port)]


def test_make_stop_cleans_up_after_a_killed_terminal(small_stack):
    dev = small_stack
    children = [r for name, r in dev.recorded().items() if name != "supervisor"]
    os.killpg(dev.process.pid, signal.SIGKILL)  # make, uv and the supervisor die at once
    dev.process.wait(10)
    assert all(r.is_running() for r in children)  # each in its own session: still there
    result = subprocess.run(
        ["make", "stop"], cwd=REPO, env=dev.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not dev.left_behind()
    assert not [port for port in stack_ports(dev.env) if port_answers(port)]
    assert not Path(dev.env["STATE_DIR"], "processes.json").exists()


def test_make_stop_signals_only_the_processes_the_stack_started():
    with state_dir() as state:
        env = stack_environment(state)
        # a stranger now holding a recorded pid, leading its own process group
        stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
        # a stack child whose supervisor was killed, with a child of its own in its group
        parent = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
        child = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
        try:
            time.sleep(0.5)
            real = ProcessRecord.of("code-server-ingestion", child.pid)
            other = ProcessRecord.of("x", stranger.pid)
            assert real is not None and other is not None
            records = [
                {**other.to_json(), "name": "supervisor", "started": other.started - 100},
                {**other.to_json(), "name": "dagster-daemon", "cmdline": ["dagster-daemon", "run"]},
                real.to_json(),
            ]
            Path(state, "processes.json").write_text(json.dumps(records))
            Path(state, "stack.pid").write_text(str(stranger.pid))  # an earlier version's files
            Path(state, "process-groups.json").write_text(json.dumps([stranger.pid]))
            result = subprocess.run(
                ["make", "stop"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert stranger.poll() is None, "make stop killed a process the stack never started"
            assert f"pid {stranger.pid} (dagster-daemon) is now another process" in result.stdout
            child.wait(15)
            assert not real.group_members(), "the stack child's own child survived make stop"
            assert not list(state.glob("*.json")) and not Path(state, "stack.pid").exists()
        finally:
            for process in (stranger, child):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def supervise(services: list[Service], until: str, timeout: float = 60) -> list[str]:
    """Run the supervisor's loop over ``services`` until it says ``until``."""
    said: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in line for line in said):
        assert time.monotonic() < deadline, said
        supervise_once(services, said.append)
        time.sleep(0.05)
    return said


def test_a_crashed_upstream_is_restarted(tmp_path):
    api = JournalApiProcess(free_port(), tmp_path / "journal-api.log", {"users": 5, "entries": 50})
    api.start()
    first = api.process
    assert first is not None
    try:
        os.kill(first.pid, signal.SIGKILL)
        said = supervise([Service("journal-api", first, api.spawn, api.healthy)], "is back")
        assert said[0] == "restarting journal-api (exited with code -9), attempt 1/5 in 1.0 s"
        assert api.process is not first and api.healthy()
    finally:
        api.stop()
        first.stop()


def test_a_crash_loop_stops_the_stack_with_the_reason(tmp_path):
    crashing = ManagedProcess(
        "feature-server", [sys.executable, "-c", "raise SystemExit('no feast repo')"],
        tmp_path / "feature-server.log",
    )  # fmt: skip
    service = Service(
        "feature-server", crashing.start(), crashing.start, policy=RestartPolicy(2, 600, 0.05)
    )
    said: list[str] = []
    with pytest.raises(StackError) as failure:
        while True:
            supervise_once([service], said.append)
            time.sleep(0.02)
    assert [line for line in said if line.startswith("restarting")] == [
        "restarting feature-server (exited with code 1), attempt 1/2 in 0.1 s",
        "restarting feature-server (exited with code 1), attempt 2/2 in 0.1 s",
    ]
    message = str(failure.value)
    assert "feature-server exited with code 1: crashed more than 2 times within 600 s" in message
    assert "no feast repo" in message  # the log's last lines say why
