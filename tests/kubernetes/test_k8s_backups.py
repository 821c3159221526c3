"""Backups: the CronJob's own dump script, taken from the rendered chart, dumps a real Postgres
(the fixtures' server); the chart's restore script loads the dumps into a second, empty server
set up the way a fresh install sets it up (the rendered initdb scripts); every table has the
same row count on both sides. The upload (mc to the object store) is not run here: no object
store is reachable offline."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from chart_scripts import run_chart_script
from data_platform_dev.releases import core as pr
from data_platform_dev.stack.postgres import LocalPostgres
from data_platform_dev.stack.processes import free_port

SUFFIX = secrets.token_hex(3)
DATABASES = {
    "dagster": f"backup_dagster_{SUFFIX}",
    "warehouse": f"backup_warehouse_{SUFFIX}",
    "featureRegistry": f"backup_feast_{SUFFIX}",
}
ROLE = f"backup_app_{SUFFIX}"


def rendered(env: str = "production") -> list[pr.Manifest]:
    release = next(r for r in pr.releases(env) if r.name == pr.STORES_RELEASE)
    # single-role mode: with team roles the restored objects go back to the teams through the
    # roles hook, which test_k8s_team_roles.py runs over objects of another owner
    postgres = {"databases": DATABASES, "user": ROLE, "teamRoles": {"enabled": False}}
    return pr.render(release, {"postgres": postgres})


def configmap(objects: list[pr.Manifest], name: str) -> dict[str, str]:
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return dict(found["data"])


def test_the_cronjob_runs_the_dump_script_then_uploads_with_a_retention() -> None:
    objects = rendered()
    (cronjob,) = [o for o in objects if o["kind"] == "CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (dump,) = pod["initContainers"]
    (upload,) = pod["containers"]
    assert dump["command"] == ["/scripts/dump.sh"]
    assert upload["command"] == ["/bin/sh", "/scripts/upload.sh"]
    scripts = next(v for v in pod["volumes"] if v["name"] == "scripts")
    assert scripts["configMap"]["name"] == "postgres-backup"
    env = {e["name"]: e.get("value") for e in upload["env"]}
    values = pr.load_yaml(pr.STORES_CHART_DIR / "values.yaml")["backup"]
    assert env["BACKUP_RETENTION_DAYS"] == str(values["retentionDays"])
    assert env["BACKUP_BUCKET"] == values["bucket"]
    assert env["BACKUP_S3_HOST"] == "s3.example.invalid"
    assert "--older-than" in configmap(objects, "postgres-backup")["upload.sh"]
    # it reaches Postgres, and only the backup key reaches the uploader
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    (postgres,) = [o for o in objects if pr.describe(o) == "StatefulSet/postgres"]
    peers = pr.ingress_peers(objects, postgres["spec"]["template"]["metadata"]["labels"])
    assert pr.admitted(peers, labels)
    assert [s["secretRef"]["name"] for s in upload["envFrom"]] == ["data-platform-backup-s3"]
    assert not any(o["kind"] == "CronJob" for o in rendered("dev")), "kind: no object store"


def with_database(url: str, database: str) -> str:
    return urlparse(url)._replace(path=f"/{database}").geturl()


def row_counts(url: str) -> dict[str, int]:
    counts = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            query = f'SELECT count(*) FROM "{schema}"."{table}"'
            counts[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]  # type: ignore[index]
    return counts


SEED = {
    "dagster": [
        "CREATE TABLE runs (run_id text PRIMARY KEY, status text, body jsonb)",
        "INSERT INTO runs SELECT 'run-' || i, 'SUCCESS', jsonb_build_object('i', i) "
        "FROM generate_series(1, 40) i",
    ],
    "warehouse": [
        "CREATE SCHEMA raw",
        "CREATE SCHEMA gold",
        "CREATE TABLE raw.journal_entries (id bigserial PRIMARY KEY, user_id int, "
        "payload jsonb, loaded_at timestamptz DEFAULT now())",
        "INSERT INTO raw.journal_entries (user_id, payload) SELECT i % 17, "
        "jsonb_build_object('n', i) FROM generate_series(1, 2500) i",
        "CREATE TABLE gold.user_features AS SELECT user_id, count(*) AS entries "
        "FROM raw.journal_entries GROUP BY user_id",
        "CREATE VIEW gold.active_users AS SELECT user_id FROM gold.user_features",
    ],
    "featureRegistry": [
        "CREATE TABLE feast_metadata (project_id text, metadata_key text, metadata_value bytea)",
        "INSERT INTO feast_metadata SELECT 'p', 'k' || i, '\\x00ff'::bytea "
        "FROM generate_series(1, 7) i",
    ],
}


@pytest.fixture
def empty_server() -> Iterator[LocalPostgres]:
    """A second Postgres with nothing in it (the target of a restore)."""
    state = Path(tempfile.mkdtemp(prefix="platform-restore-postgres-"))
    server = LocalPostgres(
        state / "data", free_port(), secrets.token_hex(12), state / "postgres.log"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_dump_and_restore_into_an_empty_server_keeps_every_row(
    postgres_url: str, empty_server: LocalPostgres, tmp_path: Path
) -> None:
    objects = rendered()
    backup = configmap(objects, "postgres-backup")
    initdb = configmap(objects, "postgres-initdb")
    source = with_database(postgres_url, "postgres")
    with psycopg.connect(source, autocommit=True) as admin:
        for database in DATABASES.values():
            admin.execute(f'CREATE DATABASE "{database}"')
    try:
        for key, statements in SEED.items():
            with psycopg.connect(with_database(postgres_url, DATABASES[key])) as conn:
                for statement in statements:
                    conn.execute(statement)
        dumps = tmp_path / "backup"
        dumps.mkdir()
        run_chart_script(backup["dump.sh"], tmp_path, source, BACKUP_DIR=str(dumps))
        assert sorted(p.name for p in dumps.iterdir()) == sorted(
            [f"{d}.dump" for d in DATABASES.values()] + ["STAMP"]
        )

        # a fresh install: the roles and the empty databases, from the rendered initdb scripts
        target = empty_server.url("postgres")
        secrets_dir = tmp_path / "secrets" / "platform"
        secrets_dir.mkdir(parents=True)
        (secrets_dir / "POSTGRES_PASSWORD").write_text(secrets.token_hex(8))
        secret_env = {"PLATFORM_SECRETS_DIR": str(secrets_dir.parent)}
        run_chart_script(initdb["10-roles.sh"], tmp_path, target, **secret_env)
        run_chart_script(initdb["20-databases.sh"], tmp_path, target)
        run_chart_script(backup["restore.sh"], tmp_path, target, str(dumps))

        for key, database in DATABASES.items():
            before = row_counts(with_database(postgres_url, database))
            after = row_counts(with_database(target, database))
            assert before and after == before, f"{key}: {before} != {after}"
        assert (
            row_counts(with_database(target, DATABASES["warehouse"]))["raw.journal_entries"] == 2500
        )
        with psycopg.connect(with_database(target, DATABASES["warehouse"])) as conn:
            owner = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'journal_entries'"
            ).fetchone()
            assert owner == (ROLE,), "restored objects belong to the application role"
            # the sequence continues after the restored rows
            conn.execute("INSERT INTO raw.journal_entries (user_id) VALUES (1)")
        # restoring again over the restored databases is clean (a second attempt after a failure)
        run_chart_script(backup["restore.sh"], tmp_path, target, str(dumps))
        assert (
            row_counts(with_database(target, DATABASES["warehouse"]))["raw.journal_entries"] == 2500
        )
    finally:
        with psycopg.connect(source, autocommit=True) as admin:
            for database in DATABASES.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_readme_restores_with_the_charts_restore_script() -> None:
    readme = (pr.REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Backups") :]
    section = section[: section.index("\n### ", 1)]
    assert "configmap postgres-backup" in section and "restore.sh" in section
    assert "retentionDays" in section
