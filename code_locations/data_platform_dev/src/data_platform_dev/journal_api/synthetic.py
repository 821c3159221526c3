"""Deterministic synthetic data for the journal app: the same options always give the same rows.

Rows are computed from their id (a splitmix64 hash), so a million entries cost no memory
until a page is served. Changes made after start-up (``advance``) are kept in a change log
whose timestamps come after every base row, which is what an incremental client sees from a
real API: rows ordered by (updated_at, id), new and changed rows at the end. A late commit
(``late_seconds``) lands inside the log, behind rows a reader may already have passed.
Deletions hide rows and are reported as tombstones ({entity, id, deleted_at}).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

GAME_TYPES = (
    ("chess", "strategy"),
    ("sudoku", "logic"),
    ("crossword", "word"),
    ("go", "strategy"),
    ("tetris", "arcade"),
    ("wordle", "word"),
    ("solitaire", "cards"),
    ("poker", "cards"),
    ("minesweeper", "logic"),
    ("backgammon", "strategy"),
    ("mahjong", "tiles"),
    ("kakuro", "logic"),
)

_US = 1_000_000
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(ids: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of (id, salt): a fast, well-spread, reproducible hash."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK


def _iso(micros: np.ndarray) -> list[str]:
    return np.datetime_as_string(
        micros.astype("datetime64[us]"), unit="us", timezone="UTC"
    ).tolist()


Columns = dict[str, list[Any]]


@dataclass
class Table:
    """A table of the API: base rows computed from their id, then a log of changed rows.

    The change log is kept sorted by (updated_at, id): a late commit (a row stamped in the
    past) lands in the middle of it, where a reader that already passed that point misses it.
    """

    name: str
    base_count: int
    base_timestamp: Callable[[np.ndarray], np.ndarray]  # id -> updated_at in microseconds
    base_columns: Callable[[np.ndarray], Columns]
    log_stamps: list[tuple[int, int]] = field(default_factory=list)  # sorted (updated_at us, id)
    log_rows: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    latest: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> its newest version
    gone: set[int] = field(default_factory=set)  # deleted ids
    created: int = 0  # ids handed out after the base rows

    @property
    def next_id(self) -> int:
        return self.base_count + self.created + 1

    @property
    def count(self) -> int:
        return self.base_count + self.created - len(self.gone)

    def exists(self, row_id: int) -> bool:
        return 1 <= row_id < self.next_id and row_id not in self.gone

    def _hidden(self) -> np.ndarray:
        """Base ids not served from the base: changed (now in the log) or deleted."""
        return np.fromiter([*self.latest, *self.gone], dtype=np.int64)

    def _base_after(self, after: tuple[int, int], limit: int) -> np.ndarray:
        """Base ids whose (updated_at, id) comes after ``after``, skipping rows that moved."""
        if self.base_count == 0:
            return np.empty(0, dtype=np.int64)
        lo, hi = 1, self.base_count + 1
        while lo < hi:  # base timestamps grow with the id: binary search the first id after
            mid = (lo + hi) // 2
            stamp = (int(self.base_timestamp(np.array([mid]))[0]), mid)
            if stamp > after:
                hi = mid
            else:
                lo = mid + 1
        hidden = self._hidden()
        ids: list[np.ndarray] = []
        taken, start = 0, lo
        while taken < limit and start <= self.base_count:
            chunk = np.arange(start, min(start + limit, self.base_count + 1), dtype=np.int64)
            if len(hidden):
                chunk = chunk[~np.isin(chunk, hidden)]
            chunk = chunk[: limit - taken]
            ids.append(chunk)
            taken += len(chunk)
            start += limit
        return np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)

    def page(
        self, after: tuple[int, int], limit: int
    ) -> tuple[Columns | list[dict[str, Any]], tuple[int, int] | None]:
        """Up to ``limit`` rows after the keyset position, and the position to continue from."""
        base_ids = self._base_after(after, limit)
        if len(base_ids) == limit:  # a full page of base rows: columns, the fast path
            return self.base_columns(base_ids), (
                int(self.base_timestamp(base_ids[-1:])[0]),
                int(base_ids[-1]),
            )
        rows: list[dict[str, Any]] = []
        if len(base_ids):
            cols = self.base_columns(base_ids)
            rows = [
                dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)
            ]
        position = bisect.bisect_right(self.log_stamps, after)
        while len(rows) < limit and position < len(self.log_stamps):
            key = self.log_stamps[position]
            if key[1] not in self.gone and self.latest[key[1]] == key:  # newest versions only
                rows.append(self.log_rows[key])
            position += 1
        if position >= len(self.log_stamps):
            return rows, None
        return rows, self.log_stamps[position - 1]

    def current(self, row_id: int) -> dict[str, Any]:
        if row_id in self.latest:
            return dict(self.log_rows[self.latest[row_id]])
        cols = self.base_columns(np.array([row_id], dtype=np.int64))
        return {name: values[0] for name, values in cols.items()}

    def append(self, row: dict[str, Any], updated_at_us: int) -> None:
        """A new version of a row; ``updated_at_us`` may lie in the past (a late commit)."""
        key = (updated_at_us, row["id"])
        if key not in self.log_rows:  # a late version can take an earlier version's stamp
            bisect.insort(self.log_stamps, key)
        self.log_rows[key] = row
        self.latest[row["id"]] = key
        self.gone.discard(row["id"])
        if row["id"] >= self.next_id:
            self.created = row["id"] - self.base_count


@dataclass(frozen=True)
class Tombstone:
    """One deletion as the API reports it: which row, and when it was deleted."""

    deleted_at_us: int
    sequence: int  # order of deletions with one timestamp (a user and all their entries)
    entity: str
    id: int

    def as_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "id": self.id, "deleted_at": _iso_one(self.deleted_at_us)}


def _to_us(moment: datetime) -> int:
    return int(moment.timestamp()) * _US + moment.microsecond


def _iso_one(micros: int) -> str:
    return _iso(np.array([micros]))[0]


@dataclass
class JournalData:
    """The journal app's users, game types and journal entries."""

    users: int = 1_000
    entries: int = 50_000
    days: int = 90
    # the newest entry is just before ``end``: now by default, so the data looks live; tests
    # pass a fixed moment to make every value reproducible
    end: datetime | date = field(
        default_factory=lambda: datetime.now(UTC).replace(second=0, microsecond=0)
    )
    seed: int = 7
    tables: dict[str, Table] = field(init=False)
    _clock_us: int = field(init=False)
    _changes: int = field(init=False, default=0)
    deletions: list[Tombstone] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        end = self.end
        if not isinstance(end, datetime):
            end = datetime(end.year, end.month, end.day)
        end_us = _to_us(end if end.tzinfo else end.replace(tzinfo=UTC))
        self._end_us = end_us
        self._start_us = end_us - self.days * 86_400 * _US
        self._clock_us = end_us
        self.tables = {
            "users": Table("users", self.users, self._user_stamp, self._user_columns),
            "game_types": Table(
                "game_types", len(GAME_TYPES), self._game_type_stamp, self._game_type_columns
            ),
            "journal_entries": Table(
                "journal_entries", self.entries, self._entry_stamp, self._entry_columns
            ),
        }

    # users: all exist before the first entry, a minute apart
    def _user_stamp(self, ids: np.ndarray) -> np.ndarray:
        return self._start_us - (self.users - ids + 1) * 60 * _US

    def _user_columns(self, ids: np.ndarray) -> Columns:
        stamps = _iso(self._user_stamp(ids))
        id_list = ids.tolist()
        return {
            "id": id_list,
            "name": [f"User {i}" for i in id_list],
            "email": [f"user{i}@journal.example" for i in id_list],
            "created_at": stamps,
            "updated_at": stamps,
        }

    def _game_type_stamp(self, ids: np.ndarray) -> np.ndarray:
        return self._start_us - (self.users + len(GAME_TYPES) - ids + 1) * 60 * _US

    def _game_type_columns(self, ids: np.ndarray) -> Columns:
        stamps = _iso(self._game_type_stamp(ids))
        return {
            "id": ids.tolist(),
            "name": [GAME_TYPES[i - 1][0] for i in ids.tolist()],
            "category": [GAME_TYPES[i - 1][1] for i in ids.tolist()],
            "created_at": stamps,
            "updated_at": stamps,
        }

    # entries: spread evenly over the period, so updated_at grows with the id
    def _entry_stamp(self, ids: np.ndarray) -> np.ndarray:
        step = (self._end_us - self._start_us) // max(self.entries, 1)
        return self._start_us + (ids - 1) * step

    def _entry_columns(self, ids: np.ndarray) -> Columns:
        stamps = _iso(self._entry_stamp(ids))
        return {
            "id": ids.tolist(),
            "user_id": (_mix(ids, self.seed) % np.uint64(self.users) + np.uint64(1)).tolist(),
            "game_type_id": (
                _mix(ids, self.seed + 1) % np.uint64(len(GAME_TYPES)) + np.uint64(1)
            ).tolist(),
            "created_at": stamps,
            "updated_at": stamps,
            "duration_minutes": (_mix(ids, self.seed + 2) % np.uint64(115) + np.uint64(5)).tolist(),
            "score": (_mix(ids, self.seed + 3) % np.uint64(1001)).tolist(),
            "mood": (_mix(ids, self.seed + 4) % np.uint64(5) + np.uint64(1)).tolist(),
        }

    def _tick(self) -> int:
        self._clock_us += _US
        return self._clock_us

    def _stamps(self, late_seconds: int, same_stamp: bool) -> Callable[[], int]:
        """Timestamps for one change: ticking, or one for all; ``late_seconds`` in the past
        (never before ``end``: base rows stay ahead of the change log)."""
        shared = max(self._tick() - late_seconds * _US, self._end_us)
        if same_stamp:
            return lambda: shared
        return lambda: max(self._tick() - late_seconds * _US, self._end_us)

    def _live_id(self, table: Table, candidate: int) -> int:
        """``candidate`` or the next id after it (wrapping) that still exists."""
        for offset in range(table.next_id):
            row_id = (candidate - 1 + offset) % (table.next_id - 1) + 1
            if table.exists(row_id):
                return row_id
        raise ValueError(f"no {table.name} left to choose from")

    def advance(
        self,
        new_entries: int = 0,
        changed_entries: int = 0,
        new_users: int = 0,
        late_seconds: int = 0,
        same_stamp: bool = False,
    ) -> dict[str, int]:
        """Append new users and entries and change ``changed_entries`` distinct existing
        entries, after every base row.

        ``late_seconds`` stamps these rows that far in the past, as a transaction that began
        earlier and commits now (a late commit); ``same_stamp`` gives them all one timestamp.
        """
        users, entries = self.tables["users"], self.tables["journal_entries"]
        stamp_of = self._stamps(late_seconds, same_stamp)
        for _ in range(new_users):
            stamp = stamp_of()
            user_id = users.next_id
            users.append(
                {
                    "id": user_id,
                    "name": f"User {user_id}",
                    "email": f"user{user_id}@journal.example",
                    "created_at": _iso_one(stamp),
                    "updated_at": _iso_one(stamp),
                },
                stamp,
            )
        for _ in range(new_entries):
            stamp = stamp_of()
            entry_id = entries.next_id
            mixed = [int(_mix(np.array([entry_id]), self.seed + k)[0]) for k in range(5)]
            entries.append(
                {
                    "id": entry_id,
                    "user_id": self._live_id(users, mixed[0] % (users.next_id - 1) + 1),
                    "game_type_id": mixed[1] % len(GAME_TYPES) + 1,
                    "created_at": _iso_one(stamp),
                    "updated_at": _iso_one(stamp),
                    "duration_minutes": mixed[2] % 115 + 5,
                    "score": mixed[3] % 1001,
                    "mood": mixed[4] % 5 + 1,
                },
                stamp,
            )
        changed: set[int] = set()
        live = entries.count
        for _ in range(min(changed_entries, live)):  # distinct entries: n asked, n changed
            entry_id = 0
            while entry_id == 0 or entry_id in changed:
                self._changes += 1
                picked = int(_mix(np.array([self._changes]), self.seed + 99)[0])
                entry_id = self._live_id(entries, picked % (entries.next_id - 1) + 1)
            changed.add(entry_id)
            row = entries.current(entry_id)
            stamp = stamp_of()
            row["mood"] = row["mood"] % 5 + 1
            row["score"] = min(row["score"] + 1, 1000)
            row["updated_at"] = _iso_one(stamp)
            entries.append(row, stamp)
        return self.counts()

    def counts(self) -> dict[str, int]:
        return {name: table.count for name, table in self.tables.items()}

    def _entries_of(self, user_id: int) -> list[int]:
        entries = self.tables["journal_entries"]
        base = np.arange(1, entries.base_count + 1, dtype=np.int64)
        owners = _mix(base, self.seed) % np.uint64(self.users) + np.uint64(1)
        ids = {int(i) for i in base[owners == np.uint64(user_id)]} - set(entries.latest)
        ids |= {
            i for i, key in entries.latest.items() if entries.log_rows[key]["user_id"] == user_id
        }
        return sorted(i for i in ids if entries.exists(i))

    def delete(self, entity: str, row_id: int) -> list[Tombstone]:
        """Delete a row; a user's deletion deletes their entries too (a tombstone each)."""
        table = self.tables.get(entity)
        if entity not in ("users", "journal_entries") or table is None:
            raise ValueError(f"cannot delete from {entity!r}: users or journal_entries")
        if not table.exists(row_id):
            raise ValueError(f"no {entity} row with id {row_id}")
        stamp = self._tick()  # one deletion, one moment: the user and all their entries
        victims = (
            [("journal_entries", i) for i in self._entries_of(row_id)] if entity == "users" else []
        )
        victims.append((entity, row_id))
        made = []
        for name, victim in victims:
            self.tables[name].gone.add(victim)
            made.append(Tombstone(stamp, len(self.deletions), name, victim))
            self.deletions.append(made[-1])
        return made

    def move(
        self, entry_id: int, user_id: int | None = None, days: int = 0, late_seconds: int = 0
    ) -> dict[str, Any]:
        """A new version of an entry on another user and/or ``days`` earlier or later (a
        correction that moves it between feature rows); ``days < 0`` on a new entry makes it
        a late one (played days ago, sent now). ``late_seconds`` stamps the new version that
        far in the past (a late commit): its updated_at can lie before the version it replaces,
        as when a transaction that began earlier commits later."""
        entries, users = self.tables["journal_entries"], self.tables["users"]
        if not entries.exists(entry_id):
            raise ValueError(f"no journal_entries row with id {entry_id}")
        if user_id is not None and not users.exists(user_id):
            raise ValueError(f"no users row with id {user_id}")
        row = entries.current(entry_id)
        stamp = max(self._tick() - late_seconds * _US, self._end_us)
        played = datetime.fromisoformat(row["created_at"]) + timedelta(days=days)
        row["created_at"] = _iso_one(_to_us(played))
        row["user_id"] = row["user_id"] if user_id is None else user_id
        row["updated_at"] = _iso_one(stamp)
        entries.append(row, stamp)
        return row

    def restore(self, entity: str, row_id: int) -> dict[str, Any]:
        """Re-create a deleted row as it was, with a new updated_at after its deletion."""
        table = self.tables.get(entity)
        if table is None or row_id not in table.gone:
            raise ValueError(f"no deleted {entity} row with id {row_id}")
        row = table.current(row_id)
        stamp = self._tick()
        row["updated_at"] = _iso_one(stamp)
        table.append(row, stamp)
        return row

    def deletions_page(
        self, updated_since: datetime | None, after: tuple[int, int] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        """Tombstones ordered by (deleted_at, sequence), from ``updated_since`` inclusive."""
        if after is None:
            since_us = _to_us(updated_since) if updated_since is not None else -(2**62)
            after = (since_us - 1, 2**62)
        keys = [(t.deleted_at_us, t.sequence) for t in self.deletions]
        position = bisect.bisect_right(keys, after)
        chosen = self.deletions[position : position + limit]
        more = position + limit < len(self.deletions)
        last = (chosen[-1].deleted_at_us, chosen[-1].sequence) if chosen and more else None
        return [t.as_json() for t in chosen], last

    def page(
        self, table: str, updated_since: datetime | None, after: tuple[int, int] | None, limit: int
    ) -> tuple[Columns | list[dict], tuple[int, int] | None]:
        if after is None:
            since_us = _to_us(updated_since) if updated_since is not None else -(2**62)
            after = (since_us - 1, 2**62)  # inclusive of updated_since
        return self.tables[table].page(after, limit)
