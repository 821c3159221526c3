"""Queries on the gold tables behind the feature views (the offline store of feature_store.yaml).

Feast reads these tables to materialize; the consistency check and the incremental windows
ask them the same questions directly: which rows dbt rewrote, which entities a window holds,
and what the newest row of an entity says.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from feast import FeatureStore, FeatureView
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.value_type import ValueType
from psycopg import sql


def connect(store: FeatureStore) -> psycopg.Connection[Any]:
    """A connection to the warehouse with the offline store's settings (search_path gold)."""
    return _get_conn(store.config.offline_store)


def _source(view: FeatureView) -> PostgreSQLSource:
    source = view.batch_source
    if not isinstance(source, PostgreSQLSource) or source.get_table_query_string().startswith("("):
        raise TypeError(
            f"feature view {view.name} must read a gold table: PostgreSQLSource(table=...)"
        )
    return source


def table(view: FeatureView) -> sql.Composable:
    return sql.Identifier(*_source(view).get_table_query_string().split("."))


def timestamp_column(view: FeatureView) -> str:
    return _source(view).timestamp_field


def join_key(view: FeatureView) -> str:
    keys = [column.name for column in view.entity_columns]
    if len(keys) != 1:
        raise TypeError(f"feature view {view.name} must have one join key, has {keys}")
    return keys[0]


def feature_columns(view: FeatureView) -> sql.Composable:
    """The view's features selected from gold, renamed as the source's field_mapping says."""
    to_column = {feature: column for column, feature in _source(view).field_mapping.items()}
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(
            sql.Identifier(to_column.get(f.name, f.name)), sql.Identifier(f.name)
        )
        for f in view.features
    )


def oldest_rewritten(
    conn: psycopg.Connection[Any], view: FeatureView, since: datetime
) -> datetime | None:
    """The oldest event time among rows written (``created_timestamp_column``) after ``since``."""
    source = _source(view)
    query = sql.SQL("SELECT min({ts}) FROM {table} WHERE {written} > %s").format(
        ts=sql.Identifier(source.timestamp_field),
        table=table(view),
        written=sql.Identifier(source.created_timestamp_column),
    )
    row = conn.execute(query, [since]).fetchone()
    return row[0] if row else None


def sample_entities(
    conn: psycopg.Connection[Any], view: FeatureView, size: int, horizon: datetime
) -> list[int]:
    """Up to ``size`` entities, drawn at random among those with a row up to ``horizon``."""
    key = sql.Identifier(join_key(view))
    query = sql.SQL(
        "SELECT {key} FROM (SELECT DISTINCT {key} FROM {table} WHERE {ts} <= %s) e "
        "ORDER BY random() LIMIT %s"
    ).format(key=key, table=table(view), ts=sql.Identifier(_source(view).timestamp_field))
    return [row[0] for row in conn.execute(query, [horizon, size])]


def latest_rows(
    conn: psycopg.Connection[Any],
    view: FeatureView,
    entities: Sequence[int],
    horizon: datetime,
) -> dict[int, dict[str, Any]]:
    """Each entity's newest row up to ``horizon``, ordered as Feast orders them.

    Feast keeps the row with the latest event time, then the latest created timestamp.
    """
    source = _source(view)
    key = join_key(view)
    query = sql.SQL(
        "SELECT DISTINCT ON ({key}) {key}, {ts}, {features} FROM {table} "
        "WHERE {key} = ANY(%s) AND {ts} <= %s ORDER BY {key}, {ts} DESC, {written} DESC"
    ).format(
        key=sql.Identifier(key),
        features=feature_columns(view),
        table=table(view),
        ts=sql.Identifier(source.timestamp_field),
        written=sql.Identifier(source.created_timestamp_column),
    )
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return {row[key]: row for row in cursor.execute(query, [list(entities), horizon])}


def first_entities(conn: psycopg.Connection[Any], view: FeatureView, count: int) -> list[int]:
    """The ``count`` smallest entity ids with a row: a stable sample for demos."""
    key = sql.Identifier(join_key(view))
    query = sql.SQL("SELECT DISTINCT {key} FROM {table} ORDER BY {key} LIMIT %s").format(
        key=key, table=table(view)
    )
    return [row[0] for row in conn.execute(query, [count])]


def present_entities(
    conn: psycopg.Connection[Any], view: FeatureView, entities: Sequence[int]
) -> set[int]:
    """Which of ``entities`` gold still has a row for (the others were deleted upstream)."""
    query = sql.SQL("SELECT DISTINCT {key} FROM {table} WHERE {key} = ANY(%s)").format(
        key=sql.Identifier(join_key(view)), table=table(view)
    )
    return {row[0] for row in conn.execute(query, [list(entities)])}


# the Postgres type each Feast value type is read as (COPY BINARY needs the exact type)
PG_TYPES = {
    ValueType.INT32: "int4",
    ValueType.INT64: "int8",
    ValueType.DOUBLE: "float8",
    ValueType.FLOAT: "float4",
    ValueType.STRING: "text",
    ValueType.BOOL: "bool",
}


def feature_types(view: FeatureView) -> list[ValueType]:
    return [f.dtype.to_value_type() for f in view.features]


def copy_types(view: FeatureView, compare: bool) -> list[str]:
    """The column types of ``newest_versions_query``'s output."""
    features = [PG_TYPES[value_type] for value_type in feature_types(view)]
    return ["int8", "timestamptz", *features, *(["timestamptz", "bool"] if compare else [])]


def newest_versions_query(view: FeatureView, compare: bool) -> sql.Composable:
    """COPY of each entity's newest row in [start, end] (two parameters), as Feast's types.

    Columns: key, event time, the features; with ``compare`` also the event time of the
    entity's version before that one, and whether any feature differs from that version.
    Feast keeps the row with the latest event time, then the latest created timestamp.
    """
    source = _source(view)
    to_column = {feature: column for column, feature in source.field_mapping.items()}
    columns = [sql.Identifier(to_column.get(f.name, f.name)) for f in view.features]
    key, ts = sql.Identifier(join_key(view)), sql.Identifier(source.timestamp_field)
    written = sql.Identifier(source.created_timestamp_column)

    def cast(prefix: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}::{}").format(sql.Identifier(prefix), column, sql.SQL(PG_TYPES[vt]))
            for column, vt in zip(columns, feature_types(view), strict=True)
        )

    def plain(prefix: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(prefix), c) for c in columns
        )

    newest = sql.SQL(
        "SELECT DISTINCT ON ({key}) * FROM {table} WHERE {ts} BETWEEN %s AND %s "
        "ORDER BY {key}, {ts} DESC, {written} DESC"
    ).format(key=key, ts=ts, written=written, table=table(view))
    if not compare:
        query = sql.SQL("SELECT n.{key}::int8, n.{ts}, {features} FROM ({newest}) n").format(
            key=key, ts=ts, features=cast("n"), newest=newest
        )
    else:
        query = sql.SQL(
            "SELECT n.{key}::int8, n.{ts}, {features}, p.{ts}, "
            "p.{ts} IS NULL OR ROW({new}) IS DISTINCT FROM ROW({old}) "
            "FROM ({newest}) n LEFT JOIN LATERAL ("
            "SELECT * FROM {table} p WHERE p.{key} = n.{key} AND p.{ts} < n.{ts} "
            "ORDER BY p.{ts} DESC, p.{written} DESC LIMIT 1) p ON true"
        ).format(
            key=key,
            ts=ts,
            written=written,
            table=table(view),
            features=cast("n"),
            new=plain("n"),
            old=plain("p"),
            newest=newest,
        )
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
