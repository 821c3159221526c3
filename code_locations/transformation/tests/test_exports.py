"""Gold exports through a real S3-compatible server (moto, its own process): immutable
objects per build, a manifest written last that readers start from, old builds expired after
the retention, and a failed export that leaves the published build as it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.parquet as pq
import pytest
from data_platform.resources import PostgresResource
from transformation.defs.assets.exports.gold_parquet import gold_parquet_exports
from transformation.gold_exports import MANIFEST, export_build, read_manifest, read_table
from transformation.object_store import ExportStore

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
GOLD_DDL = """
CREATE SCHEMA gold;
CREATE TABLE gold.user_journal_features (
    user_id bigint, feature_date date, event_timestamp timestamptz, entries_7d integer,
    entries_30d integer, avg_mood_30d double precision, avg_score_30d double precision,
    minutes_30d bigint, favorite_game_type text, days_since_last_entry integer,
    current_streak_days integer, updated_at timestamptz);
CREATE TABLE gold.game_type_stats (
    game_type_id bigint, game_type_name text, category text, feature_date date,
    event_timestamp timestamptz, entries_1d integer, entries_30d integer,
    active_users_30d integer, avg_score_30d double precision, avg_mood_30d double precision,
    avg_duration_minutes_30d double precision, updated_at timestamptz);
INSERT INTO gold.user_journal_features
SELECT u, date '2026-06-01' + d, timestamptz '2026-06-02 00:00+00' + d * interval '1 day',
       d % 7, d, CASE WHEN d > 0 THEN 3.5 END, CASE WHEN d > 0 THEN 512.25 END, d * 10,
       CASE WHEN d > 0 THEN 'chess' END, d % 3, d % 4, now()
FROM generate_series(1, 40) AS u, generate_series(0, 29) AS d;
INSERT INTO gold.game_type_stats
SELECT g, 'type ' || g, 'logic', date '2026-06-01' + d, timestamptz '2026-06-02 00:00+00',
       d, d * 2, g, 500.0, 3.0, 42.5, now()
FROM generate_series(1, 12) AS g, generate_series(0, 29) AS d;
"""


@pytest.fixture
def gold_warehouse(warehouse: PostgresResource) -> PostgresResource:
    """A warehouse whose gold tables hold known rows (the dbt build has its own test)."""
    with warehouse.connect() as conn:
        conn.execute(GOLD_DDL)
    return warehouse


@pytest.fixture
def s3_store(s3_endpoint: str, request: pytest.FixtureRequest) -> ExportStore:
    """A fresh bucket; builds the manifest no longer names are kept for an hour."""
    bucket = f"exports-{request.node.name.replace('_', '-')[:40].lower()}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS
    ).create_bucket(Bucket=bucket)
    return ExportStore(
        uri=f"s3://{bucket}/platform", s3_endpoint_url=s3_endpoint, retention_hours=1, **CREDENTIALS
    )


def export(warehouse: PostgresResource, store: ExportStore) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [gold_parquet_exports], resources={"postgres": warehouse, "export_store": store}
    )


def builds(store: ExportStore) -> set[str]:
    return {name.split("/")[2] for name in store.names("gold/") if "/build=" in name}


def test_gold_tables_round_trip_through_s3(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    result = export(gold_warehouse, s3_store)

    manifest = read_manifest(s3_store)
    build = manifest["build"]
    assert s3_store.names() == sorted(
        [
            MANIFEST,
            f"gold/user_journal_features/build={build}/part-00000.parquet",
            f"gold/game_type_stats/build={build}/part-00000.parquet",
        ]
    )
    features = read_table(s3_store, "user_journal_features")
    assert features.num_rows == manifest["tables"]["user_journal_features"]["rows"] == 40 * 30
    assert str(features.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(features.schema.field("entries_7d").type) == "int32"
    assert str(features.schema.field("minutes_30d").type) == "int64"
    first = features.slice(0, 2).to_pylist()
    assert first[0]["user_id"] == 1 and first[0]["feature_date"] == date(2026, 6, 1)
    assert first[0]["avg_mood_30d"] is None and first[1]["avg_mood_30d"] == 3.5
    assert first[1]["event_timestamp"] == datetime(2026, 6, 3, tzinfo=UTC)
    stats = read_table(s3_store, "game_type_stats")
    assert stats.num_rows == 12 * 30 and stats.column("avg_duration_minutes_30d")[0].as_py() == 42.5
    metadata = {
        m.materialization.asset_key.to_user_string(): m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert metadata["exports/user_journal_features"]["rows"].value == 1200
    assert metadata["exports/game_type_stats"]["build"].value == build


def test_builds_are_immutable_and_readers_follow_the_manifest(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    export(gold_warehouse, s3_store)
    old = read_manifest(s3_store)
    old_part = old["tables"]["user_journal_features"]["objects"][0]
    old_bytes = s3_store.read_bytes(old_part)
    with gold_warehouse.connect() as conn:
        conn.execute("DELETE FROM gold.user_journal_features WHERE user_id > 10")
    export(gold_warehouse, s3_store)
    new = read_manifest(s3_store)
    assert new["build"] != old["build"]
    assert read_table(s3_store, "user_journal_features").num_rows == 10 * 30
    # the old build is untouched: a reader that started from the old manifest reads it whole
    assert s3_store.read_bytes(old_part) == old_bytes
    assert read_table(s3_store, "user_journal_features", old).num_rows == 40 * 30
    assert builds(s3_store) == {f"build={old['build']}", f"build={new['build']}"}

    with gold_warehouse.connect() as conn:  # a column Parquet cannot take: the export fails
        conn.execute("ALTER TABLE gold.user_journal_features ADD COLUMN broken interval")
    failed = dg.materialize(
        [gold_parquet_exports],
        resources={"postgres": gold_warehouse, "export_store": s3_store},
        raise_on_error=False,
    )
    assert not failed.success
    assert read_manifest(s3_store) == new
    assert read_table(s3_store, "user_journal_features").num_rows == 10 * 30


def test_old_builds_expire_after_the_retention(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    hour = timedelta(hours=1)

    def build_at(minute: int, name: str):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
        return export_build(gold_warehouse, s3_store, f"{at:%Y%m%dT%H%M%SZ}-{name}", hour, now=at)

    first = build_at(0, "first")
    second = build_at(30, "second")
    assert second.expired == []  # the first build is 30 minutes old: still readable
    third = build_at(120, "third")
    assert sorted(third.expired) == sorted(
        o
        for done in (first, second)
        for table in done.manifest["tables"].values()
        for o in table["objects"]
    )
    assert builds(s3_store) == {f"build={third.build}"}
    assert read_manifest(s3_store)["build"] == third.build


def test_large_tables_are_split_into_parts(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    done = export_build(
        gold_warehouse, s3_store, "20260101T000000Z-parts", timedelta(hours=1), part_rows=500
    )
    objects = done.manifest["tables"]["user_journal_features"]["objects"]
    assert [o.rsplit("/", 1)[1] for o in objects] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    table = read_table(s3_store, "user_journal_features")
    assert table.num_rows == 1200
    assert table.column("user_id").to_pylist() == sorted(table.column("user_id").to_pylist())


def test_local_folder_publishes_builds_and_manifest(
    gold_warehouse: PostgresResource, tmp_path: Path
) -> None:
    store = ExportStore(uri=str(tmp_path / "exports"), retention_hours=0)
    export(gold_warehouse, store)
    first = read_manifest(store)
    with pytest.raises(RuntimeError), store.publishing(MANIFEST) as staged:
        staged.write_text("{half a manifest")
        raise RuntimeError("the export died half way")
    assert read_manifest(store) == first  # the published manifest was never touched
    assert (
        pq.read_table(
            tmp_path / "exports" / first["tables"]["game_type_stats"]["objects"][0]
        ).num_rows
        == 12 * 30
    )
    export(gold_warehouse, store)
    second = read_manifest(store)
    assert builds(store) == {f"build={second['build']}"}  # retention 0: the first one is gone
    assert not (
        tmp_path / "exports" / "gold" / "user_journal_features" / f"build={first['build']}"
    ).exists()
    assert read_table(store, "user_journal_features").num_rows == 40 * 30
