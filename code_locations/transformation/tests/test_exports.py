"""Gold tables round-trip as Parquet through a real S3-compatible server (moto, its own
process), reruns overwrite in place, and a failed export leaves the published object intact."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.parquet as pq
import pytest
from data_platform.resources import PostgresResource
from transformation.defs.assets.exports.gold_parquet import gold_parquet_exports, object_name
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
    bucket = f"exports-{request.node.name.replace('_', '-')[:40].lower()}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS
    ).create_bucket(Bucket=bucket)
    return ExportStore(uri=f"s3://{bucket}/platform", s3_endpoint_url=s3_endpoint, **CREDENTIALS)


def export(warehouse: PostgresResource, store: ExportStore) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [gold_parquet_exports], resources={"postgres": warehouse, "export_store": store}
    )


def test_gold_tables_round_trip_through_s3(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    result = export(gold_warehouse, s3_store)

    assert set(s3_store.list_objects()) == {
        "s3://" + s3_store.uri.removeprefix("s3://") + "/gold/user_journal_features.parquet",
        "s3://" + s3_store.uri.removeprefix("s3://") + "/gold/game_type_stats.parquet",
    }
    features = pq.read_table(io.BytesIO(s3_store.read_bytes(object_name("user_journal_features"))))
    assert features.num_rows == 40 * 30
    assert str(features.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(features.schema.field("entries_7d").type) == "int32"
    assert str(features.schema.field("minutes_30d").type) == "int64"
    first = features.slice(0, 2).to_pylist()
    assert first[0]["user_id"] == 1 and first[0]["feature_date"] == date(2026, 6, 1)
    assert first[0]["avg_mood_30d"] is None and first[1]["avg_mood_30d"] == 3.5
    assert first[1]["event_timestamp"] == datetime(2026, 6, 3, tzinfo=UTC)
    stats = pq.read_table(io.BytesIO(s3_store.read_bytes(object_name("game_type_stats"))))
    assert stats.num_rows == 12 * 30 and stats.column("avg_duration_minutes_30d")[0].as_py() == 42.5
    metadata = {
        m.materialization.asset_key.to_user_string(): m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert metadata["exports/user_journal_features"]["rows"].value == 1200


def test_rerun_overwrites_and_failed_export_keeps_previous(
    gold_warehouse: PostgresResource, s3_store: ExportStore
) -> None:
    export(gold_warehouse, s3_store)
    with gold_warehouse.connect() as conn:
        conn.execute("DELETE FROM gold.user_journal_features WHERE user_id > 10")
    export(gold_warehouse, s3_store)
    name = object_name("user_journal_features")
    assert pq.read_table(io.BytesIO(s3_store.read_bytes(name))).num_rows == 10 * 30
    assert len(s3_store.list_objects()) == 2  # overwritten in place, nothing left over

    with gold_warehouse.connect() as conn:  # a column Parquet cannot take: the export fails
        conn.execute("ALTER TABLE gold.user_journal_features ADD COLUMN broken interval")
    failed = dg.materialize(
        [gold_parquet_exports],
        resources={"postgres": gold_warehouse, "export_store": s3_store},
        raise_on_error=False,
    )
    assert not failed.success
    assert pq.read_table(io.BytesIO(s3_store.read_bytes(name))).num_rows == 10 * 30
    assert len(s3_store.list_objects()) == 2


def test_local_folder_publishes_atomically(
    gold_warehouse: PostgresResource, tmp_path: Path
) -> None:
    store = ExportStore(uri=str(tmp_path / "exports"))
    export(gold_warehouse, store)
    published = tmp_path / "exports" / "gold" / "user_journal_features.parquet"
    before = published.stat().st_ino
    with (
        pytest.raises(RuntimeError),
        store.publishing(object_name("user_journal_features")) as staged,
    ):
        staged.write_bytes(b"half a parquet file")
        raise RuntimeError("the export died half way")
    assert published.stat().st_ino == before  # the published file was never touched
    assert pq.read_table(published).num_rows == 40 * 30
    assert sorted(p.name for p in published.parent.iterdir()) == [
        "game_type_stats.parquet",
        "user_journal_features.parquet",
    ]
    export(gold_warehouse, store)
    assert published.stat().st_ino != before  # a rerun replaced it in one rename
