"""The Kubernetes grants on this machine. The `team_databases` fixture gives a test the stores
chart's team-roles.sh: the ingestion location's real assets load raw as the ingestion role, and
the same load as another team's role is refused before it writes a row. The local stack keeps
each role's generated password in its secrets.env, added to a state dir from before the roles.
(Through the running stack: tests/test_local_stack.py.)"""

from __future__ import annotations

import stat

import dagster as dg
import psycopg
import pytest
from data_platform_dev.stack.cli import ROLE_PASSWORD_KEYS, _stored_secrets
from data_platform_dev.testing import TeamDatabases
from ingestion.defs.assets.ingestion.journal_app import journal_app
from ingestion.journal_api import JournalApiResource

RAW_TABLES = ("raw.users", "raw.game_types", "raw.journal_entries")


def load(team_databases: TeamDatabases, team: str, url: str) -> dg.ExecuteInProcessResult:
    client = JournalApiResource(base_url=url, page_size=500, backoff_seconds=0.01, max_attempts=1)
    return dg.materialize(
        [journal_app],
        resources={"postgres": team_databases.resource(team), "journal_api": client},
        raise_on_error=False,
    )


def test_ingestion_loads_raw_as_its_role_and_no_other_team_can(team_databases, start_journal_api):
    api = start_journal_api(users=20, entries=300)
    for team in ("transformation", "featureStore", "instance"):
        result = load(team_databases, team, api.url)
        assert not result.success, f"{team} loaded raw"
        errors = [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
        assert any("permission denied" in error for error in errors), (team, errors)

    assert load(team_databases, "ingestion", api.url).success
    with team_databases.resource("ingestion").connect() as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'raw'"
        ).fetchall()
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RAW_TABLES]
    assert owners == [(team_databases.roles["ingestion"],)]
    assert counts[0] == 20 and counts[2] == 300
    with team_databases.resource("transformation").connect() as conn:  # reads raw
        assert conn.execute("SELECT count(*) FROM raw.journal_entries").fetchone() == (300,)
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        team_databases.resource("featureStore").connect() as conn,
    ):
        conn.execute("SELECT count(*) FROM raw.journal_entries")


def test_each_team_connects_to_its_own_databases_only(team_databases):
    reachable = {}
    for team in team_databases.roles:
        for database in team_databases.databases:
            try:
                with team_databases.resource(team, database).connect() as conn:
                    conn.execute("SELECT 1")
                reachable.setdefault(team, set()).add(database)
            except ConnectionError as error:
                assert "permission denied" in str(error.__cause__), error
    assert reachable == {
        "instance": {"dagster"},
        "ingestion": {"warehouse"},
        "transformation": {"warehouse"},
        "featureStore": {"warehouse", "featureRegistry"},
    }
    env = team_databases.environment("featureStore")
    assert env["POSTGRES_USER"] == team_databases.roles["featureStore"]
    assert env["FEAST_REGISTRY_DB"] == team_databases.databases["featureRegistry"]


def test_a_state_dir_from_before_the_roles_gets_their_passwords_and_keeps_its_own(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("POSTGRES_PASSWORD=old\nREDIS_PASSWORD=r\nJOURNAL_API_ADMIN_TOKEN=t\n")
    path.chmod(0o600)
    first = _stored_secrets(path)
    assert first["POSTGRES_PASSWORD"] == "old" and first["REDIS_PASSWORD"] == "r"
    added = [first[key] for key in ROLE_PASSWORD_KEYS.values()]
    assert len(set(added)) == 4 and all(len(value) == 32 for value in added)
    assert _stored_secrets(path) == first  # kept across starts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = _stored_secrets(tmp_path / "new" / "secrets.env")
    assert set(fresh) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "JOURNAL_API_ADMIN_TOKEN"} | set(
        ROLE_PASSWORD_KEYS.values()
    )
    assert stat.S_IMODE((tmp_path / "new" / "secrets.env").stat().st_mode) == 0o600
