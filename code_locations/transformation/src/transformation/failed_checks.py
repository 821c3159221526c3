"""What a failed dbt test found, on its Dagster check.

dbt reports only how many rows a test returned. Once a test has failed, its compiled query
(in the build's target path: the rows that build wrote) runs again, so passing builds pay
nothing: the check shows the first failing rows and, for column_rules, each violated rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from data_platform.resources import PostgresResource

PREVIEW_ROWS = 10
RULE_COLUMN = "violated_rule"  # the first column of column_rules (dbt/tests/generic)


def compiled_sql(target_path: Path, node: Mapping[str, Any]) -> Path:
    """Where dbt wrote a node's compiled query in a build's target path."""
    return (
        target_path / "compiled" / node["package_name"] / node["original_file_path"] / node["path"]
    )


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "null" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    lines += [" | ".join(cell(v) for v in row) for row in rows]
    return "\n".join(f"| {line} |" for line in lines)


def explain_failure(
    check: dg.AssetCheckResult, sql_path: Path, warehouse: PostgresResource
) -> dg.AssetCheckResult:
    """``check`` with the failing rows of its test and, for column_rules, the count of
    violations per rule (also its description); unchanged if they cannot be read."""
    import psycopg

    try:
        failing = f"(\n{sql_path.read_text()}\n) as failing"
        with warehouse.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"select * from {failing} limit {PREVIEW_ROWS}")
            columns = [column.name for column in cursor.description or ()]
            preview = cursor.fetchall()
            counts = []
            if RULE_COLUMN in columns:
                cursor.execute(
                    f"select {RULE_COLUMN}, count(*) from {failing} group by 1 order by 1"
                )
                counts = cursor.fetchall()
    except (OSError, psycopg.Error, ConnectionError) as error:
        dg.get_dagster_logger().warning(f"cannot read the failing rows of {sql_path}: {error}")
        return check
    metadata: dict[str, Any] = {
        f"failing rows (first {PREVIEW_ROWS})": dg.MetadataValue.md(_markdown(columns, preview))
    }
    if not counts:
        return check.with_metadata({**check.metadata, **metadata})
    metadata["violated rules"] = dg.MetadataValue.json({rule: n for rule, n in counts})
    described = "Violated: " + "; ".join(
        f"{rule} ({n} row{'' if n == 1 else 's'})" for rule, n in counts
    )
    return check.with_metadata({**check.metadata, **metadata})._replace(description=described)
