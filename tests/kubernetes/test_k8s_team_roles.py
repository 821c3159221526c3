"""Least privilege per team, in Postgres: the chart's team-roles.sh (rendered with
postgres.teamRoles.enabled) run against a real server after the rendered initdb scripts, over
objects a single-role install left behind. Then each team's role does its own work and is
refused another team's: ingestion writes raw only, transformation reads raw and writes staging
and gold, the feature store reads gold and owns the Feast registry, the Dagster instance owns
its database and nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlparse

import psycopg
import pytest
from chart_scripts import run_chart_script
from data_platform_dev.releases import core as pr

SUFFIX = secrets.token_hex(3)
DATABASES = {
    "dagster": f"roles_dagster_{SUFFIX}",
    "warehouse": f"roles_warehouse_{SUFFIX}",
    "featureRegistry": f"roles_feast_{SUFFIX}",
}
OWNER = f"roles_platform_{SUFFIX}"  # the single role of an install before team roles
TEAMS = {
    "instance": f"t_instance_{SUFFIX}",
    "ingestion": f"t_ingestion_{SUFFIX}",
    "transformation": f"t_transformation_{SUFFIX}",
    "featureStore": f"t_feature_store_{SUFFIX}",
}
PASSWORDS = {team: secrets.token_hex(10) for team in TEAMS}


def scripts() -> dict[str, str]:
    release = next(r for r in pr.releases("production") if r.name == pr.STORES_RELEASE)
    team_roles = {"enabled": True} | {team: {"role": role} for team, role in TEAMS.items()}
    objects = pr.render(
        release,
        {"postgres": {"databases": DATABASES, "user": OWNER, "teamRoles": team_roles}},
    )
    data: dict[str, str] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in (
            "postgres-initdb",
            "postgres-team-roles",
        ):
            data.update(obj["data"])
    return data


def url_for(base: str, database: str, user: str | None = None, password: str = "") -> str:
    parts = urlparse(base)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc, path=f"/{database}").geturl()


def as_team(base: str, team: str, database: str) -> psycopg.Connection:
    return psycopg.connect(
        url_for(base, DATABASES[database], TEAMS[team], PASSWORDS[team]), autocommit=True
    )


def refused(base: str, team: str, database: str, statement: str) -> bool:
    try:
        with as_team(base, team, database) as conn:
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    except psycopg.OperationalError as error:  # refused at connect (no CONNECT privilege)
        return "permission denied" in str(error)
    return False


@pytest.fixture(scope="module")
def installed(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server as a single-role install left it, then upgraded with team roles."""
    tmp_path = tmp_path_factory.mktemp("team-roles")
    data = scripts()
    owner_password = secrets.token_hex(10)
    platform = tmp_path / "secrets" / "platform"
    platform.mkdir(parents=True)
    (platform / "POSTGRES_PASSWORD").write_text(owner_password)
    for team, password in PASSWORDS.items():
        (tmp_path / "secrets" / "roles" / team).mkdir(parents=True)
        (tmp_path / "secrets" / "roles" / team / "password").write_text(password)
    env = {"PLATFORM_SECRETS_DIR": str(tmp_path / "secrets")}
    admin_url = url_for(postgres_url, "postgres")
    try:
        run_chart_script(data["10-roles.sh"], tmp_path, admin_url, **env)
        run_chart_script(data["20-databases.sh"], tmp_path, admin_url)
        # what the single owner role created before the upgrade
        warehouse = url_for(postgres_url, DATABASES["warehouse"], OWNER, owner_password)
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA raw")
            conn.execute("CREATE TABLE raw.users (id bigserial PRIMARY KEY, name text)")
            conn.execute("INSERT INTO raw.users (name) VALUES ('before')")
        for _ in range(2):  # idempotent: every upgrade runs it again
            run_chart_script(data["team-roles.sh"], tmp_path, admin_url, **env)
        yield postgres_url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for database in DATABASES.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in [*TEAMS.values(), OWNER]:
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_each_team_does_its_own_work(installed: str) -> None:
    with as_team(installed, "ingestion", "warehouse") as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS raw")  # what its migrations run
        conn.execute("CREATE TABLE raw.journal_entries (id int PRIMARY KEY, user_id int)")
        conn.execute("INSERT INTO raw.journal_entries VALUES (1, 1), (2, 1)")
        conn.execute("INSERT INTO raw.users (name) VALUES ('after')")  # moved to ingestion
    with as_team(installed, "transformation", "warehouse") as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS gold")  # what dbt runs
        assert conn.execute("SELECT count(*) FROM raw.journal_entries").fetchone() == (2,)
        conn.execute("CREATE TABLE staging.entries AS SELECT * FROM raw.journal_entries")
        conn.execute(
            "CREATE TABLE gold.user_features AS SELECT user_id, count(*) AS n "
            "FROM staging.entries GROUP BY user_id"
        )
        conn.execute("CREATE VIEW gold.active AS SELECT user_id FROM gold.user_features")
    with as_team(installed, "featureStore", "warehouse") as conn:
        assert conn.execute("SELECT n FROM gold.user_features").fetchone() == (2,)
        conn.execute("CREATE TEMPORARY TABLE offline_join AS SELECT * FROM gold.user_features")
    with as_team(installed, "featureStore", "featureRegistry") as conn:
        conn.execute("CREATE TABLE feast_metadata (k text)")
    with as_team(installed, "instance", "dagster") as conn:
        conn.execute("CREATE TABLE runs (run_id text)")


def test_no_team_writes_another_teams_schema(installed: str) -> None:
    with as_team(installed, "ingestion", "warehouse") as conn:
        conn.execute("CREATE TABLE raw.entries (id int)")
    with as_team(installed, "transformation", "warehouse") as conn:
        conn.execute("CREATE TABLE gold.features (id int)")
    forbidden = {
        "ingestion": [
            ("warehouse", "CREATE TABLE gold.x (id int)"),
            ("warehouse", "CREATE TABLE staging.x (id int)"),
            ("warehouse", "INSERT INTO gold.features VALUES (1)"),
            ("warehouse", "SELECT * FROM gold.features"),
            ("warehouse", "CREATE TABLE public.x (id int)"),
            ("featureRegistry", "SELECT 1"),
            ("dagster", "SELECT 1"),
        ],
        "transformation": [
            ("warehouse", "INSERT INTO raw.entries VALUES (1)"),
            ("warehouse", "DELETE FROM raw.users"),
            ("warehouse", "CREATE TABLE raw.x (id int)"),
            ("warehouse", "DROP TABLE raw.entries"),
            ("featureRegistry", "SELECT 1"),
            ("dagster", "SELECT 1"),
        ],
        "featureStore": [
            ("warehouse", "INSERT INTO gold.features VALUES (1)"),
            ("warehouse", "CREATE TABLE gold.x (id int)"),
            ("warehouse", "SELECT * FROM raw.entries"),
            ("warehouse", "CREATE SCHEMA mine"),
            ("dagster", "SELECT 1"),
        ],
        "instance": [
            ("warehouse", "SELECT 1"),
            ("featureRegistry", "SELECT 1"),
        ],
    }
    allowed = [
        f"{team} on {database}: {statement}"
        for team, attempts in forbidden.items()
        for database, statement in attempts
        if not refused(installed, team, database, statement)
    ]
    assert allowed == []


def test_every_release_connects_as_its_teams_role_with_only_its_own_secret() -> None:
    """The roles the hook creates are the ones the releases use, and no pod of a location (code
    server or run) receives another team's Postgres password."""
    stores = pr.deep_merge(
        pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml"),
        pr.load_yaml(pr.STORES_CHART_DIR / "values-production.yaml"),
    )
    team_roles = stores["postgres"]["teamRoles"]
    assert team_roles["enabled"] is True
    system = pr.load_yaml(pr.SYSTEM_VALUES_DIR / "values.yaml")
    assert system["postgresql"]["postgresqlUsername"] == team_roles["instance"]["role"]
    assert system["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == []
    teams = {"ingestion": "ingestion", "transformation": "transformation"}
    teams["feature_store"] = "featureStore"
    credentials = {
        stores["secrets"][team_roles[t]["secret"]]["existingSecret"] for t in teams.values()
    }
    credentials.add(stores["secrets"]["credentials"]["existingSecret"])
    for location in pr.locations():
        deployment = pr.load_yaml(pr.location_values_path(location.package))["deployments"][0]
        team = team_roles[teams[location.name]]
        env = {e["name"]: e.get("value") for e in deployment["env"]}
        assert env["POSTGRES_USER"] == team["role"], location.name
        own = stores["secrets"][team["secret"]]["existingSecret"]
        names = {s["name"] for s in deployment["envSecrets"]}
        assert names & credentials == {own}, f"{location.name} gets {names & credentials}"
