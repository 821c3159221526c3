"""The development upstream: a real HTTP server speaking the journal app's REST API.

It runs as its own process on a port (the demo, the tests and the benchmarks start it the
same way) and can inject the faults an upstream really has: 5xx and 429 responses, latency,
malformed JSON, a dropped, added or mistyped field, a repeated cursor, late commits.

    GET  /api/v1/{users,game_types,journal_entries}?updated_since=ISO&limit=N&cursor=TOKEN
         -> {"data": [...], "next_cursor": TOKEN | null}   rows ordered by (updated_at, id)
    GET  /api/v1/deletions?updated_since=ISO&limit=N&cursor=TOKEN
         -> {"data": [{"entity": "users" | "journal_entries", "id": 7, "deleted_at": ISO}],
             "next_cursor": TOKEN | null}   tombstones ordered by deleted_at; deleting a user
             deletes their journal entries too, one tombstone each, all at one deleted_at
    GET  /health
    GET|POST /admin/faults   {"error_rate": 0.1, "fail_next": 2, "latency_ms": 50,
                              "malformed": "journal_entries", "drop_field": "journal_entries.mood",
                              "wrong_type": "journal_entries.score", "fault_record_id": 17,
                              "fault_after_pages": 1, "extra_field": "journal_entries.location",
                              "repeat_cursor": "journal_entries", "rate_limit_next": 1,
                              "retry_after_seconds": 1, "late_commit_seconds": 120}
    POST /admin/advance      {"new_entries": 10, "changed_entries": 5, "new_users": 1,
                              "late_seconds": 60, "same_stamp": true}
    POST /admin/delete       {"entity": "users" | "journal_entries", "id": 7}
    POST /admin/restore      {"entity": "users" | "journal_entries", "id": 7}
    POST /admin/move         {"id": 7, "user_id": 3, "days": -2, "late_seconds": 60}   an entry to
                             another user/day; late_seconds stamps the new version in the past,
                             possibly before the version it replaces (updated_at goes backwards)

/admin/* needs ``Authorization: Bearer $JOURNAL_API_ADMIN_TOKEN`` (from the environment; without
it the admin endpoints are off). With JOURNAL_API_TOKEN set, /api/v1/* needs that token too.
Request bodies are capped at 64 KiB and ``advance`` at 100,000 rows of each kind.
"""

from __future__ import annotations

import argparse
import hmac
import os
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec

from data_platform_dev.journal_api.synthetic import Columns, JournalData

API_PREFIX = "/api/v1/"
MAX_LIMIT = 50_000
MAX_BODY_BYTES = 64 * 1024
MAX_ADVANCE = 100_000
ADMIN_TOKEN_ENV = "JOURNAL_API_ADMIN_TOKEN"
READ_TOKEN_ENV = "JOURNAL_API_TOKEN"
PageKey = tuple[str, "tuple[int, int] | None", "datetime | None", int]  # table, after, since, limit
_UNSAFE_TEXT = re.compile(r'["\\\x00-\x1f]')


@dataclass
class Faults:
    error_rate: float = 0.0
    fail_next: int = 0
    latency_ms: int = 0
    malformed: str | None = None  # table name, or "*"
    drop_field: str | None = None  # "table.field"
    wrong_type: str | None = None  # "table.field"
    fault_record_id: int | None = None  # only this record is damaged (default: every record)
    fault_after_pages: int = 0  # pages served intact per table before damage starts
    extra_field: str | None = None  # "table.field": a field the client has not declared yet
    repeat_cursor: str | None = None  # table whose pages all point back at the same cursor
    rate_limit_next: int = 0  # the next N requests answer 429 with Retry-After
    retry_after_seconds: int = 1
    late_commit_seconds: int = 0  # every advance stamps its rows this far in the past

    def applies_to(self, spec: str | None, table: str) -> str | None:
        """The field named by a "table.field" spec when it targets ``table``."""
        if spec and spec.split(".", 1)[0] == table:
            return spec.split(".", 1)[1]
        return None


def _encode_columns(cols: Columns) -> bytes:
    """JSON objects from columns without building a dict per row (the fast path)."""
    parts: list[str] = []
    encoded: list[list[Any]] = []
    for name, values in cols.items():
        if values and isinstance(values[0], str) and not _UNSAFE_TEXT.search("".join(values)):
            parts.append(f'"{name}":"%s"')  # plain text: quoted in the template, no escaping
            encoded.append(values)
        elif values and isinstance(values[0], int):
            parts.append(f'"{name}":%d')
            encoded.append(values)
        else:
            parts.append(f'"{name}":%s')
            encoded.append([msgspec.json.encode(v).decode() for v in values])
    template = "{" + ",".join(parts) + "}"
    return ",".join([template % row for row in zip(*encoded, strict=True)]).encode()


class JournalApi:
    """State shared by the request threads: the data, the faults, a page counter per table."""

    def __init__(self, data: JournalData, faults: Faults, seed: int = 0) -> None:
        self.data = data
        self.faults = faults
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.pages_served: dict[str, int] = {}
        self.requests = 0
        # rendered full pages of base rows: immutable until the next advance, like data at rest
        self.page_cache: dict[PageKey, tuple[bytes, str | None]] = {}
        self.generation = 0

    def set_faults(self, values: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(Faults)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
        with self.lock:
            self.faults = Faults(**values)
            self.pages_served.clear()
        return self.faults

    def should_fail(self) -> int | None:
        """The status code of an injected failure for this request, if any."""
        with self.lock:
            self.requests += 1
            if self.faults.rate_limit_next > 0:
                self.faults.rate_limit_next -= 1
                return 429
            if self.faults.fail_next > 0:
                self.faults.fail_next -= 1
                return 503
            if self.faults.error_rate > 0 and self.random.random() < self.faults.error_rate:
                return 503
            return None

    def _page(self, key: PageKey) -> tuple[bytes, str | None]:
        """A page's JSON array and the next cursor; full pages of base rows are cached."""
        table, after, since, limit = key
        with self.lock:
            if key in self.page_cache:
                return self.page_cache[key]
            generation = self.generation
            if table == "deletions":
                data, next_after = self.data.deletions_page(since, after, limit)
            else:
                data, next_after = self.data.page(table, since, after, limit)
        next_cursor = None if next_after is None else f"{next_after[0]}.{next_after[1]}"
        if isinstance(data, list):  # rows from the change log: small, never cached
            return msgspec.json.encode(data), next_cursor
        body = b"[" + _encode_columns(data) + b"]"
        with self.lock:
            if generation == self.generation:
                self.page_cache[key] = (body, next_cursor)
        return body, next_cursor

    def change(self, action: str, body: dict[str, Any]) -> Any:
        """Apply an admin change; rendered pages are dropped (changed rows leave them)."""
        with self.lock:
            self.generation += 1
            self.page_cache.clear()
            if action == "advance":
                return self.data.advance(**_bounded_advance(body, self.faults))
            if action == "move":
                return self.data.move(**_move_arguments(body))
            entity, row_id = body.get("entity"), body.get("id")
            if not isinstance(entity, str) or not isinstance(row_id, int):
                raise ValueError('expected {"entity": "users" | "journal_entries", "id": <int>}')
            if action == "delete":
                return [t.as_json() for t in self.data.delete(entity, row_id)]
            return self.data.restore(entity, row_id)

    def render_page(self, table: str, query: dict[str, list[str]]) -> bytes:
        limit = min(int(query.get("limit", ["1000"])[0]), MAX_LIMIT)
        since_raw = query.get("updated_since", [None])[0]
        since = datetime.fromisoformat(since_raw) if since_raw else None
        cursor_raw = query.get("cursor", [None])[0]
        after = None
        if cursor_raw:
            stamp, _, row_id = cursor_raw.partition(".")
            after = (int(stamp), int(row_id))
        body, next_cursor = self._page((table, after, since, limit))
        with self.lock:
            served = self.pages_served.get(table, 0)
            self.pages_served[table] = served + 1
        faults = self.faults
        damaged = served >= faults.fault_after_pages
        drop = faults.applies_to(faults.drop_field, table) if damaged else None
        wrong = faults.applies_to(faults.wrong_type, table) if damaged else None
        extra = faults.applies_to(faults.extra_field, table)
        if drop or wrong or extra:
            rows = msgspec.json.decode(body)
            for row in rows:
                if extra:
                    row[extra] = f"{extra}-{row['id']}"
                if faults.fault_record_id not in (None, row["id"]):
                    continue
                if drop:
                    row.pop(drop, None)
                if wrong:
                    row[wrong] = f"not-a-{wrong}"
            body = msgspec.json.encode(rows)
        if faults.repeat_cursor == table and next_cursor is not None and damaged:
            next_cursor = cursor_raw or next_cursor  # a broken upstream pointing back at itself
        page = b'{"data":' + body + b',"next_cursor":' + msgspec.json.encode(next_cursor) + b"}"
        if damaged and faults.malformed in (table, "*"):
            page = page[: max(len(page) // 2, 1)]  # cut mid-document, as a dropped proxy would
        return page


def _move_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """``move``'s arguments, checked: an entry id, optionally a user id and a day shift."""
    unknown = set(body) - {"id", "user_id", "days", "late_seconds"}
    if unknown:
        raise ValueError(f"unknown move argument(s) {sorted(unknown)}")
    entry_id, user_id, days = body.get("id"), body.get("user_id"), body.get("days", 0)
    late = body.get("late_seconds", 0)
    if not isinstance(entry_id, int) or not isinstance(days, int) or abs(days) > 365:
        raise ValueError('expected {"id": <int>, "user_id": <int>, "days": -365..365}')
    if user_id is not None and not isinstance(user_id, int):
        raise ValueError(f"user_id must be an integer, got {user_id!r}")
    if not isinstance(late, int) or not 0 <= late <= 86_400:
        raise ValueError(f"late_seconds must be an integer from 0 to 86400, got {late!r}")
    return {"entry_id": entry_id, "user_id": user_id, "days": days, "late_seconds": late}


def _bounded_advance(body: dict[str, Any], faults: Faults) -> dict[str, Any]:
    """``advance``'s arguments, checked: counts and delays are bounded, nothing else passes."""
    counts = ("new_entries", "changed_entries", "new_users", "late_seconds")
    unknown = set(body) - {*counts, "same_stamp"}
    if unknown:
        raise ValueError(f"unknown advance argument(s) {sorted(unknown)}")
    for name in counts:
        value = body.get(name, 0)
        if not isinstance(value, int) or not 0 <= value <= MAX_ADVANCE:
            raise ValueError(f"{name} must be an integer from 0 to {MAX_ADVANCE}, got {value!r}")
    return {"late_seconds": faults.late_commit_seconds, **body}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: JournalApiServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, msgspec.json.encode(value))

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BodyTooLargeError(
                f"request body of {length} bytes; the limit is {MAX_BODY_BYTES}"
            )
        body = msgspec.json.decode(self.rfile.read(length)) if length else {}
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    def _authorized(self, token: str | None) -> bool:
        """True when the request carries ``token``; answers 401/403 itself otherwise."""
        if token is None:
            self._json(403, {"error": f"admin endpoints are off: start with {ADMIN_TOKEN_ENV} set"})
            return False
        sent = self.headers.get("Authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return True
        self._json(401, {"error": "missing or wrong bearer token"})
        return False

    def do_GET(self) -> None:
        api = self.server.api
        url = urlparse(self.path)
        if url.path == "/health":
            counts = {name: t.count for name, t in api.data.tables.items()}
            deletions = len(api.data.deletions)
            return self._json(200, {"status": "ok", "counts": counts, "deletions": deletions})
        if url.path == "/admin/faults":
            if self._authorized(self.server.admin_token):
                self._json(200, asdict(api.faults))
            return None
        if url.path.startswith(API_PREFIX):
            table = url.path[len(API_PREFIX) :].strip("/")
            if table not in api.data.tables and table != "deletions":
                return self._json(404, {"error": f"no endpoint {url.path}"})
            if self.server.read_token is not None and not self._authorized(self.server.read_token):
                return None
            if api.faults.latency_ms:
                time.sleep(api.faults.latency_ms / 1000)
            status = api.should_fail()
            if status == 429:
                self.send_response(429)
                self.send_header("Retry-After", str(api.faults.retry_after_seconds))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if status is not None:
                return self._json(status, {"error": "injected upstream failure"})
            try:
                return self._send(200, api.render_page(table, parse_qs(url.query)))
            except ValueError as error:
                return self._json(400, {"error": str(error)})
        return self._json(404, {"error": f"no endpoint {url.path}"})

    def do_POST(self) -> None:
        api = self.server.api
        path = urlparse(self.path).path
        if path not in (
            "/admin/faults",
            "/admin/advance",
            "/admin/delete",
            "/admin/restore",
            "/admin/move",
        ):
            return self._json(404, {"error": f"no endpoint {path}"})
        if not self._authorized(self.server.admin_token):
            self.close_connection = True  # the unread body must not be taken for a request
            return None
        try:
            body = self._body()
            if path == "/admin/faults":
                return self._json(200, asdict(api.set_faults(body)))
            return self._json(200, api.change(path.removeprefix("/admin/"), body))
        except BodyTooLargeError as error:
            self.close_connection = True
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(error)})
        except (TypeError, ValueError, msgspec.DecodeError) as error:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})


class BodyTooLargeError(ValueError):
    pass


class JournalApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        api: JournalApi,
        verbose: bool = False,
        admin_token: str | None = None,
        read_token: str | None = None,
    ) -> None:
        super().__init__(address, Handler)
        self.api = api
        self.verbose = verbose
        self.admin_token = admin_token or None
        self.read_token = read_token or None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=90, help="entries spread over this many days")
    parser.add_argument(
        "--end",
        type=datetime.fromisoformat,
        help="the moment the data ends, e.g. 2026-06-30 or 2026-06-30T12:00 (default: now, UTC)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verbose", action="store_true")
    for f in fields(Faults):
        kind = {"float": float, "int": int}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_options = {
        "users": args.users,
        "entries": args.entries,
        "days": args.days,
        "seed": args.seed,
    }
    if args.end:
        data_options["end"] = args.end
    faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    server = JournalApiServer(
        (args.host, args.port),
        JournalApi(JournalData(**data_options), faults),
        args.verbose,
        admin_token=os.environ.get(ADMIN_TOKEN_ENV),
        read_token=os.environ.get(READ_TOKEN_ENV),
    )
    print(
        f"journal API on http://{args.host}:{args.port}{API_PREFIX} ({args.users} users, {args.entries} entries)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
