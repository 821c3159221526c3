"""Gold exports as immutable builds: objects that are never overwritten, and a manifest.

Each export writes ``gold/<table>/build=<id>/part-<n>.parquet`` for both tables from one
database snapshot, then ``gold/_manifest.json`` naming exactly those objects, last. A reader
starts from the manifest (``read_manifest``, ``read_table``): it never mixes two versions of
one file (objects are immutable) or two builds (one manifest names both tables). Builds that
the manifest no longer names are deleted once older than the retention, so a reader that
fetched an older manifest has that long to finish.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_platform.resources import PostgresResource

from transformation.gold_tables import GOLD_TABLES, PART_ROWS, write_parts
from transformation.object_store import ExportStore

if TYPE_CHECKING:  # pyarrow is imported by the readers only, not when the location loads
    import pyarrow as pa

MANIFEST = "gold/_manifest.json"
_BUILD = re.compile(r"^gold/(?P<table>[^/]+)/build=(?P<build>(?P<at>\d{8}T\d{6}Z)-[^/]+)/")
_STAMP = "%Y%m%dT%H%M%SZ"


def build_id(at: datetime, run_id: str) -> str:
    """Sortable by time, unique per run: 20261203T071500Z-1a2b3c4d."""
    return f"{at.astimezone(UTC).strftime(_STAMP)}-{run_id[:8]}"


def part_name(table: str, build: str, part: int) -> str:
    return f"gold/{table}/build={build}/part-{part:05d}.parquet"


@dataclass(frozen=True)
class Export:
    build: str
    manifest: dict[str, Any]
    expired: list[str]

    def rows(self, table: str) -> int:
        return int(self.manifest["tables"][table]["rows"])


def export_build(
    postgres: PostgresResource,
    store: ExportStore,
    build: str,
    retention: timedelta,
    part_rows: int = PART_ROWS,
    now: datetime | None = None,
) -> Export:
    """Write both gold tables as one build, publish its manifest, expire old builds."""
    now = now or datetime.now(UTC)
    tables: dict[str, Any] = {}
    with postgres.connect() as conn:
        # one snapshot for both tables: they describe the same dbt build
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET TIME ZONE 'UTC'")
        for table in GOLD_TABLES:
            names: list[str] = []

            def open_part(
                part: int, table: str = table, names: list[str] = names
            ) -> AbstractContextManager[Path]:
                names.append(part_name(table, build, part))
                return store.publishing(names[-1])

            counts = write_parts(conn, "gold", table, open_part, part_rows)
            tables[table] = {"rows": sum(counts), "objects": names}
    manifest = {"build": build, "created_at": now.isoformat(), "tables": tables}
    with store.publishing(MANIFEST) as staged:
        staged.write_text(json.dumps(manifest, indent=2))
    return Export(build, manifest, expire_builds(store, manifest, retention, now))


def _builds(store: ExportStore) -> Iterator[tuple[str, str, datetime]]:
    """(object name, build, build time) of every build object under gold/."""
    for name in store.names("gold/"):
        match = _BUILD.match(name)
        if match:
            at = datetime.strptime(match["at"], _STAMP).replace(tzinfo=UTC)
            yield name, match["build"], at


def expire_builds(
    store: ExportStore, manifest: dict[str, Any], retention: timedelta, now: datetime
) -> list[str]:
    """Delete the objects of builds the manifest does not name, once older than ``retention``."""
    current = manifest["build"]
    doomed = [
        name for name, build, at in _builds(store) if build != current and at < now - retention
    ]
    store.delete(doomed)
    return doomed


def read_manifest(store: ExportStore) -> dict[str, Any]:
    """The current build's manifest: where every reader starts."""
    try:
        return json.loads(store.read_bytes(MANIFEST))  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise LookupError(f"no {MANIFEST} under {store.uri}: no export has finished yet") from None


def read_table(store: ExportStore, table: str, manifest: dict[str, Any] | None = None) -> pa.Table:
    """One gold table of one build (the current one unless a manifest is given)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = manifest or read_manifest(store)
    parts = [
        pq.read_table(io.BytesIO(store.read_bytes(name)))
        for name in manifest["tables"][table]["objects"]
    ]
    return pa.concat_tables(parts)
