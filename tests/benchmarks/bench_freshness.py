"""Benchmark: from an upstream change to the online features that reflect it, with no manual step.

Not a test: it prints figures. It starts the local stack (every port a free one, state in a
temporary directory), lets the change sensor run the first ingestion and automation carry
it through dbt and Feast, then writes to the dev upstream at random moments (its admin
``advance`` endpoint: a new journal entry, or a changed one) for ``--minutes``. For each
write it takes the user's online features through the feature server just before, and polls
them until they differ: the seconds in between are that write's freshness. A change to an
entry older than the features' 30-day window cannot show and is not counted, nor is a write
to a user who still waits for an earlier one (which of the two showed would be a guess).
The runs of the measured window are summarized per job: time queued before starting and
time running, which says where the seconds go. The last line is JSON.

    python -m tests.benchmarks.bench_freshness [--minutes 4] [--users 1000] [--entries 30000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from dagster import DagsterInstance, RunsFilter
from data_platform_dev.stack.bench import (
    phases,
    run_events,
    running_stack,
    stack_arguments,
    timestamped,
    wait_for_quiet,
)
from data_platform_dev.stack.cli import Stack
from data_platform_dev.stack.processes import raise_if_stop_requested

FEATURES = [
    f"user_journal_features:{name}"
    for name in (
        "entries_7d",
        "entries_30d",
        "avg_mood_30d",
        "avg_score_30d",
        "minutes_30d",
        "days_since_last_entry",
    )
]
WINDOW_DAYS = 28  # a changed entry older than this may fall outside the 30-day features


@dataclass
class Write:
    kind: str  # "new" or "changed"
    entry_id: int
    user_id: int
    written_at: float  # monotonic
    before: tuple[Any, ...]
    reflected_after: float | None = None


class FeatureServer:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def values(self, users: list[int]) -> dict[int, tuple[Any, ...]]:
        """user -> the values of FEATURES, as the feature server serves them now."""
        response = self.client.post(
            "/get-online-features",
            content=json.dumps({"features": FEATURES, "entities": {"user_id": users}}),
            headers={"Content-Type": "application/json"},
        )
        served = response.raise_for_status().json()
        names = served["metadata"]["feature_names"]
        columns = {
            name: result["values"]
            for name, result in zip(names, served["results"], strict=True)
            if name != "user_id"
        }
        return {
            user: tuple(columns[name.split(":")[1]][i] for name in FEATURES)
            for i, user in enumerate(users)
        }


def wait_for_first_features(
    features: FeatureServer, users: list[int], timeout: float, say: Any
) -> float:
    """Seconds until the sensor's first ingestion reached the feature server."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        raise_if_stop_requested()
        try:
            if all(v[1] is not None for v in features.values(users).values()):
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"no online features for users {users} within {timeout:.0f} s")


class Upstream:
    """The dev upstream: admin writes, and the change log read back after each."""

    def __init__(self, stack: Stack, end: datetime) -> None:
        api = stack.journal_api
        assert api is not None
        self.api = api
        self.newest = end  # change-log rows are stamped after the data's end

    def write(self, kind: str) -> list[dict[str, Any]]:
        self.api.advance(**({"new_entries": 1} if kind == "new" else {"changed_entries": 1}))
        page = httpx.get(
            f"{self.api.url}/api/v1/journal_entries",
            params={
                "updated_since": (self.newest + timedelta(microseconds=1)).isoformat(),
                "limit": 100,
            },
            timeout=10,
        )
        rows = page.raise_for_status().json()["data"]
        for row in rows:
            self.newest = max(self.newest, datetime.fromisoformat(row["updated_at"]))
        return rows  # type: ignore[no-any-return]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(stack: Stack, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    instance = DagsterInstance.get()
    features = FeatureServer(stack.feature_server_url)
    end = datetime.fromisoformat(
        (stack.config.state_dir / "journal-api-end.txt").read_text().strip()
    )
    first = wait_for_first_features(features, [1, 2, 3], args.timeout, say)
    say(f"first features online {first:.1f} s after the stack was up (sensor-launched)")
    wait_for_quiet(instance, 10, args.timeout)
    say("automation settled; writing to the upstream at random moments")
    upstream = Upstream(stack, end)
    rng = random.Random(args.seed)
    writes: list[Write] = []
    skipped: dict[str, int] = defaultdict(int)
    window_started = time.time()
    writing_until = time.monotonic() + args.minutes * 60
    next_write = time.monotonic() + rng.uniform(2, args.max_gap)
    while True:
        raise_if_stop_requested()
        now = time.monotonic()
        pending = [w for w in writes if w.reflected_after is None]
        # every write gets its full timeout: the newest pending one decides when to stop
        if now >= writing_until and (
            not pending or now - max(w.written_at for w in pending) > args.timeout
        ):
            break
        if now < writing_until and now >= next_write:
            kind = "new" if rng.random() < 0.8 else "changed"
            # the user is known only after the write; the snapshot taken right after it is
            # still the state before it (no load, let alone dbt and Feast, fits in a second)
            rows = upstream.write(kind)
            written_at = time.monotonic()
            for row in rows:
                user = int(row["user_id"])
                played = datetime.fromisoformat(row["created_at"])
                if kind == "changed" and played < upstream.newest - timedelta(days=WINDOW_DAYS):
                    skipped["changed outside the 30-day window"] += 1
                    continue
                if any(w.user_id == user for w in pending):
                    skipped["user still waiting for an earlier write"] += 1
                    continue
                before = features.values([user])[user]
                if time.monotonic() - written_at > 1:
                    skipped["features read too late to be the state before"] += 1
                    continue
                writes.append(Write(kind, int(row["id"]), user, written_at, before))
                say(f"wrote {kind} entry {row['id']} of user {user}")
            next_write = time.monotonic() + rng.uniform(2, args.max_gap)
        if pending:
            current = features.values(sorted({w.user_id for w in pending}))
            for w in pending:
                if current[w.user_id] != w.before:
                    w.reflected_after = time.monotonic() - w.written_at
                    say(
                        f"{w.kind} entry {w.entry_id} of user {w.user_id} online after "
                        f"{w.reflected_after:.1f} s"
                    )
        time.sleep(args.poll)
    return summarize(instance, writes, skipped, window_started, args.timeout, say)


def summarize(
    instance: DagsterInstance,
    writes: list[Write],
    skipped: dict[str, int],
    window_started: float,
    timeout: float,
    say: Any,
) -> dict[str, Any]:
    for reason, count in skipped.items():
        say(f"not counted: {count} write(s), {reason}")
    missed = [w for w in writes if w.reflected_after is None]
    if missed:
        say(
            f"{len(missed)} write(s) not online within {timeout:.0f} s (counted as {timeout:.0f} s): "
            + ", ".join(f"{w.kind} entry {w.entry_id} of user {w.user_id}" for w in missed)
        )
    by_location: dict[str, list[list[tuple[str, float]]]] = defaultdict(list)
    durations: dict[str, list[float]] = defaultdict(list)
    records = instance.get_run_records(
        RunsFilter(created_after=datetime.fromtimestamp(window_started, tz=UTC))
    )
    for record in records:
        run = record.dagster_run
        origin = run.remote_job_origin
        location = origin.location_name if origin is not None else run.job_name
        events = run_events(instance, run.run_id)
        by_location[location].append(phases(events, record.create_timestamp.timestamp()))
        if record.start_time and record.end_time:
            durations[location].append(record.end_time - record.start_time)
    say("runs in the measured window, mean seconds per phase (launch -> first step), and running:")
    for location, runs in sorted(by_location.items()):
        names = [name for name, _ in runs[0]]
        means = {n: statistics.mean(dict(r).get(n, 0.0) for r in runs) for n in names}
        say(
            f"  {location:15s} {len(runs):3d} runs  "
            + ", ".join(f"{n} {v:.1f}" for n, v in means.items())
            + f"; running {statistics.mean(durations[location] or [0.0]):.1f}"
        )
    seconds = [w.reflected_after if w.reflected_after is not None else timeout for w in writes]
    return {
        "entries": len(writes),
        "p50_s": round(percentile(seconds, 0.5), 1) if seconds else None,
        "p95_s": round(percentile(seconds, 0.95), 1) if seconds else None,
        "max_s": round(max(seconds), 1) if seconds else None,
        "not_online": len(missed),
        "runs": {location: len(runs) for location, runs in by_location.items()},
    }


def main() -> None:
    parser = stack_arguments(__doc__)
    parser.add_argument("--minutes", type=float, default=4.0, help="how long writes go on")
    parser.add_argument("--max-gap", type=float, default=30.0, help="longest pause between writes")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    say = timestamped("freshness")

    with running_stack(
        "bench-freshness-", webserver=False, users=args.users, entries=args.entries
    ) as stack:
        result = run(stack, args, say)
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
