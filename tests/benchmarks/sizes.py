"""Sizes for the benchmarks that print growth curves: each size on its own fresh stack."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from data_platform_dev.stack.servers import LocalServers, local_servers


def entry_sizes(text: str) -> list[int]:
    """argparse type of ``--entries``: one size, or several separated by commas (a curve)."""
    return [int(size) for size in text.replace("_", "").split(",")]


def fresh_stacks(sizes: list[int], users: int, prefix: str) -> Iterator[tuple[int, LocalServers]]:
    """Each size with its own upstream and database (no size warms the next one's caches)."""
    for entries in sizes:
        upstream = {"users": users, "entries": entries, "end": "2026-06-30"}
        with (
            tempfile.TemporaryDirectory(prefix=prefix) as tmp,
            local_servers(Path(tmp), upstream=upstream) as servers,
        ):
            print(f"--- {entries:,} entries")
            yield entries, servers
