"""dbt in the run's own process on the prepared manifest, and tests that read the rows a build
wrote: an incremental build tests its own rows, a test without the build's start every row."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY = timedelta(days=1)


def test_the_prepared_manifest_runs_against_any_warehouse(tmp_path) -> None:
    """manifest.json names the database it was parsed with; the build's relations use ours."""
    from transformation.dbt_config import dbt_project
    from transformation.dbt_in_process import dbt_manifest
    from transformation.manifest import ensure_manifest

    manifest = dbt_manifest(ensure_manifest(dbt_project), "elsewhere")
    models = [n for n in manifest.nodes.values() if n.resource_type == "model"]
    assert models and {n.database for n in models} == {"elsewhere"}
    assert all(n.relation_name.startswith('"elsewhere".') for n in models)
    assert {s.database for s in manifest.sources.values()} == {"elsewhere"}
    generic = [n for n in manifest.nodes.values() if n.resource_type == "test"]
    assert all(n.test_metadata is not None for n in generic), "generic tests lost their arguments"


def test_incremental_builds_test_the_rows_they_wrote(chess_player, build_gold, rows) -> None:
    raw_tables = chess_player
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with raw_tables.connect() as conn:
        for entry_id, days_ago in enumerate((20, 10, 2), start=1):
            at = midnight - days_ago * DAY + timedelta(hours=9)
            conn.execute(
                "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, "
                "game_type_id, duration_minutes, score, mood) VALUES (%s, %s, %s, 1, 1, 10, 100, 3)",
                [entry_id, at, at],
            )

    first = build_gold()
    assert first.success
    checks = first.get_asset_check_evaluations()
    assert len(checks) == 25 and all(c.passed for c in checks), sorted(c.check_name for c in checks)
    materialized = {m.asset_key.path[-1] for m in first.get_asset_materialization_events()}
    assert {"stg_journal_entries", "user_journal_features", "game_type_stats"} <= materialized

    # a row written by an earlier build, broken behind dbt's back: no build wrote it since
    with raw_tables.connect() as conn:
        conn.execute(
            "UPDATE gold.user_journal_features SET entries_7d = -1 WHERE feature_date = %s",
            [(midnight - 15 * DAY).date()],
        )
        conn.execute(
            "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, "
            "game_type_id, duration_minutes, score, mood) VALUES (4, now(), now(), 1, 1, 5, 50, 4)"
        )
    second = build_gold()
    assert second.success
    assert all(c.passed for c in second.get_asset_check_evaluations())
    # the incremental build skips the uniqueness the unique indexes and primary keys enforce
    # (the first build, which created every table, ran them: 25 checks)
    skipped = {c.check_name for c in checks} - {
        c.check_name for c in second.get_asset_check_evaluations()
    }
    assert skipped and all(name.startswith(("unique", "source_unique")) for name in skipped)
    assert len(skipped) == 10, sorted(skipped)
    (written,) = rows(
        "SELECT min(feature_date) AS first FROM gold.user_journal_features "
        "WHERE updated_at = (SELECT max(updated_at) FROM gold.user_journal_features)"
    )
    assert written["first"] > (midnight - 15 * DAY).date(), "the build rewrote the broken row"

    # the same test without the build's start reads every row, and finds it
    from dbt.cli.main import dbtRunner
    from transformation.dbt_config import DBT_PROJECT_DIR

    result = dbtRunner().invoke(
        [
            "test",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR / "profiles"),
            "--quiet",
            "--select",
            "user_journal_features_column_rules",
            "--vars",
            json.dumps({"as_of": datetime.now(UTC).isoformat()}),
        ]
    )
    assert not result.success
    assert [r.failures for r in result.result.results] == [1]


def test_new_rows_breaking_rules_fail_their_relations_rules_check(chess_player) -> None:
    """One check per relation runs every row rule; a failed one names the rules broken and
    shows the rows (failed_checks.py), one failure per violation as dbt counts them."""
    import dagster as dg
    from transformation.dbt_config import dbt_cli
    from transformation.defs.assets.transformations.dbt_assets import dbt_analytics

    def build() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [dbt_analytics],
            resources={"dbt": dbt_cli(), "postgres": chess_player},
            raise_on_error=False,
        )

    insert = (
        "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, game_type_id, "
        "duration_minutes, score, mood) VALUES (%s, now(), now(), 1, 1, 10, %s, %s)"
    )
    with chess_player.connect() as conn:
        conn.execute(insert, [1, 100, 3])
    assert build().success

    with chess_player.connect() as conn:
        conn.execute(insert, [2, 5000, 9])  # a score and a mood out of range, in one row
    second = build()
    assert not second.success, "an error-level check failed: the build fails"
    failed = {c.check_name: c for c in second.get_asset_check_evaluations() if not c.passed}
    assert set(failed) == {"raw_journal_entries_column_rules"}
    check = failed["raw_journal_entries_column_rules"]
    assert check.metadata["dagster_dbt/failed_row_count"].value == 2
    assert check.metadata["violated rules"].value == {
        "mood between 1 and 5": 1,
        "score between 0 and 1000": 1,
    }
    assert check.description == (
        "Violated: mood between 1 and 5 (1 row); score between 0 and 1000 (1 row)"
    )
    preview = check.metadata["failing rows (first 10)"].value
    assert "| violated_rule | id |" in preview and "| score between 0 and 1000 | 2 |" in preview


def test_source_freshness_runs_in_process(raw_tables, dbt_warehouse) -> None:
    """`dbt source freshness` on the prepared manifest: fresh raw entries pass, stale warn."""
    import dagster as dg
    from transformation.dbt_config import dbt_cli
    from transformation.defs.assets.transformations.source_freshness import (
        CHECK_NAME,
        raw_source_freshness,
    )

    def evaluate(hours_ago: int) -> dg.AssetCheckEvaluation:
        with raw_tables.connect() as conn:
            conn.execute("DELETE FROM raw.journal_entries")
            conn.execute(
                "INSERT INTO raw.journal_entries (id, created_at, updated_at, user_id, "
                "game_type_id, duration_minutes, score, mood, _ingested_at) VALUES (1, now(), "
                "now(), 1, 1, 5, 50, 4, now() - make_interval(hours => %s))",
                [hours_ago],
            )
        result = dg.materialize(
            [raw_source_freshness],
            resources={"dbt": dbt_cli(), "postgres": dbt_warehouse},
            selection=dg.AssetSelection.checks(
                dg.AssetCheckKey(dg.AssetKey("journal_entries"), CHECK_NAME)
            ),
        )
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    fresh = evaluate(0)
    assert fresh.passed, fresh.metadata
    stale = evaluate(3)  # warn after 2 hours
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN, stale.metadata


PREPARED_BUILD = """
import gc, json, sys
from dbt_common.dataclass_schema import dbtClassMixin
from transformation.dbt_config import dbt_cli

schemas = dbtClassMixin.__dict__["json_schema"].__func__  # one lru_cache for every contract
cli = dbt_cli()
cli.prepare(sys.argv[1])
prepared = schemas.cache_info().misses
tracked = len(gc.get_objects())  # what a full collection walks
events = list(cli.run_in_process(["build", "--select", "stg_game_types"], database=sys.argv[1]))
print(json.dumps({"prepared": prepared, "after_build": schemas.cache_info().misses,
                  "events": len(events), "frozen": gc.get_freeze_count(), "tracked": tracked}))
"""


def test_a_prepared_build_starts_dbt_without_building_schemas(raw_tables, tmp_path) -> None:
    """In a fresh process, as a run worker: after prepare(), the build (under the lock) builds
    none of the JSON schemas dbt checks its configuration with, a full garbage collection
    during it does not walk what was loaded (frozen), and it writes run_results.json but not
    the prepared manifest again, and a dbt.log without every statement."""
    import os
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-c", PREPARED_BUILD, raw_tables.database],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,  # the warehouse's variables and DBT_TARGET_PATH (dbt_warehouse)
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert counts["events"] > 0 and counts["prepared"] >= 8
    assert counts["after_build"] == counts["prepared"], "dbt built a schema under the lock"
    assert counts["frozen"] > 100_000 and counts["tracked"] < counts["frozen"] / 10, counts
    target = os.environ["DBT_TARGET_PATH"]
    written = {path.name for path in Path(target).rglob("*.json")}
    assert "run_results.json" in written and "manifest.json" not in written, written
    # dbt.log at info level: each node's start and result, not each statement
    (log,) = Path(target).rglob("dbt.log")
    lines = log.read_text().splitlines()
    assert any("[info ]" in line and "stg_game_types" in line for line in lines), lines[-20:]
    assert not any("[debug]" in line for line in lines), "dbt.log has debug lines"
