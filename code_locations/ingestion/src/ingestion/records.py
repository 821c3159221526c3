"""The declared schema of every upstream record, and the errors that name what broke.

A page is decoded and validated in one pass (msgspec, in C); a record that misses a field or
carries a wrong type fails the whole batch with the endpoint, the record id and the field.
Timestamps stay text until Postgres parses them during the COPY (several times faster than
building datetimes in Python); a value Postgres rejects is reported the same way.
The raw tables' columns are derived from the same declarations, so the two cannot drift.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import msgspec

Mood = Annotated[int, msgspec.Meta(ge=1, le=5)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Timestamp = Annotated[str, msgspec.Meta(min_length=10, extra={"postgres": "timestamptz"})]


class Record(msgspec.Struct, frozen=True):
    """Base of every upstream record: a stable id and the time it last changed."""

    endpoint: ClassVar[str]
    table: ClassVar[str]

    id: int
    created_at: Timestamp
    updated_at: Timestamp


class User(Record, frozen=True):
    endpoint: ClassVar[str] = "users"
    table: ClassVar[str] = "users"

    name: str
    email: str


class GameType(Record, frozen=True):
    endpoint: ClassVar[str] = "game_types"
    table: ClassVar[str] = "game_types"

    name: str
    category: str


class JournalEntry(Record, frozen=True):
    endpoint: ClassVar[str] = "journal_entries"
    table: ClassVar[str] = "journal_entries"

    user_id: int
    game_type_id: int
    duration_minutes: NonNegative
    score: NonNegative
    mood: Mood


RECORD_TYPES: tuple[type[Record], ...] = (User, GameType, JournalEntry)

DELETABLE = ("users", "journal_entries")


class Tombstone(msgspec.Struct, frozen=True):
    """One deletion from GET /api/v1/deletions: the row's endpoint, its id and when it went."""

    endpoint: ClassVar[str] = "deletions"
    table: ClassVar[str] = "deletions"

    entity: Literal["users", "journal_entries"]
    id: int
    deleted_at: Timestamp


def endpoint_path(record_type: type[Record] | type[Tombstone]) -> str:
    return f"/api/v1/{record_type.endpoint}"


_PG_TYPES = {int: "bigint", str: "text", float: "double precision"}


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """The base type of a field and whether it may be null (``X | None``)."""
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        base, _ = _unwrap(args[0])
        return base, True
    return hint, False


def _extra(hint: Any) -> dict[str, Any]:
    if get_origin(hint) in (Union, types.UnionType):
        return _extra(next(a for a in get_args(hint) if a is not type(None)))
    if get_origin(hint) is not Annotated:
        return {}
    metas = [m for m in get_args(hint)[1:] if isinstance(m, msgspec.Meta)]
    return {k: v for m in metas for k, v in (m.extra or {}).items()}


def columns(record_type: type[msgspec.Struct]) -> list[tuple[str, str]]:
    """(column, Postgres type) pairs in declaration order."""
    hints = get_type_hints(record_type, include_extras=True)
    result = []
    for name in record_type.__struct_fields__:
        hint = hints[name]
        base, _ = _unwrap(hint)
        if get_origin(base) is Literal:
            base = type(get_args(base)[0])
        result.append((name, _extra(hint).get("postgres", _PG_TYPES[base])))
    return result


def nullable(record_type: type[msgspec.Struct]) -> set[str]:
    """Fields declared ``X | None``: their columns accept NULL."""
    hints = get_type_hints(record_type, include_extras=True)
    return {name for name in record_type.__struct_fields__ if _unwrap(hints[name])[1]}


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(value: str) -> str:
    """A value as COPY's text format needs it (backslash, tab and line breaks escaped)."""
    return value.translate(_COPY_ESCAPES)


def _copy_null(value: Any, escape: Callable[[str], str] | None = None) -> str:
    if value is None:
        return "\\N"
    return escape(value) if escape is not None else str(value)


def _line_formatter(record_type: type[msgspec.Struct], escape: bool) -> Callable[[Any], str]:
    hints = get_type_hints(record_type, include_extras=True)
    parts = []
    for name in record_type.__struct_fields__:
        base, optional = _unwrap(hints[name])
        text = base is str
        if optional:  # NULL is \N in COPY's text format
            parts.append(
                f"{{null(r.{name}, escape)}}" if escape and text else f"{{null(r.{name})}}"
            )
        else:
            parts.append(f"{{escape(r.{name})}}" if escape and text else f"{{r.{name}}}")
    template = "\\t".join(parts) + "\\n"
    scope = {"escape": copy_escape, "null": _copy_null}
    return eval(f'lambda r: f"{template}"', scope)  # type: ignore[no-any-return]


class CopyText:
    """Records as COPY text, one line each, with formatters compiled once per record type.

    Escaping every value costs four times the formatting, and almost no value needs it: a page
    is formatted plainly, and only when its tabs, line breaks or backslashes show that some
    value held one is it formatted again with escapes.
    """

    def __init__(self, record_type: type[msgspec.Struct]) -> None:
        self.separators = len(record_type.__struct_fields__) - 1
        self.plain = _line_formatter(record_type, escape=False)
        self.escaped = _line_formatter(record_type, escape=True)

    def __call__(self, records: list[Any]) -> str:
        plain = self.plain
        text = "".join([plain(r) for r in records])
        rows = len(records)
        if (
            text.count("\n") == rows
            and text.count("\t") == rows * self.separators
            and "\\" not in text
            and "\r" not in text
        ):
            return text
        escaped = self.escaped
        return "".join([escaped(r) for r in records])


class Page(list):  # type: ignore[type-arg]
    """The records of one response and when it arrived (UTC, the reader's clock).

    Raw keeps the version of a row it read last, not the one with the largest updated_at:
    upstream stamps can go backwards (see raw_tables), read times cannot.
    """

    __slots__ = ("read_at",)

    def __init__(self, records: list[Any], read_at: datetime) -> None:
        super().__init__(records)
        self.read_at = read_at


class UpstreamError(Exception):
    """The upstream API answered with something we must not load."""


class MalformedPageError(UpstreamError):
    def __init__(self, endpoint: str, page: int, detail: str) -> None:
        super().__init__(
            f"{endpoint}: page {page} is not valid JSON ({detail}); nothing from this batch "
            "was written. Check the upstream API or retry later."
        )


class RecordValidationError(UpstreamError):
    def __init__(self, endpoint: str, record_id: Any, field: str, problem: str) -> None:
        self.endpoint, self.record_id, self.field, self.problem = (
            endpoint,
            record_id,
            field,
            problem,
        )
        super().__init__(
            f"{endpoint}: record id={record_id}: field '{field}': {problem}. "
            "The upstream schema may have drifted; nothing from this batch was written."
        )


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    next_cursor: str | None = None


_PATH = re.compile(r"\$\.data\[(\d+)\](?:\.(\w+))?")
_MISSING = re.compile(r"missing required field `(\w+)`")


def decode_page(
    body: bytes, record_type: type[msgspec.Struct], endpoint: str, page: int
) -> tuple[list[Any], str | None]:
    """Validated records of one page, and the cursor of the next page."""
    try:
        decoded = _page_decoder(record_type).decode(body)
        return decoded.data, decoded.next_cursor
    except msgspec.ValidationError as error:
        raise _explain(error, body, record_type, endpoint, page) from error
    except msgspec.DecodeError as error:
        raise MalformedPageError(endpoint, page, str(error)) from error


@dataclass(frozen=True)
class Rejected:
    """A record that failed validation, kept as received (quarantine)."""

    record_id: int | None
    field: str
    problem: str
    record: str  # the record's JSON as the upstream sent it


def decode_page_lenient(
    body: bytes, record_type: type[msgspec.Struct], endpoint: str, page: int
) -> tuple[list[Any], list[Rejected]]:
    """The valid records of one page, and the others as rejects (for quarantine).

    The page is decoded in one pass as usual; only a page with a bad record is taken apart
    record by record. A page that is not JSON at all still fails: there is nothing to keep.
    """
    try:
        return decode_page(body, record_type, endpoint, page)[0], []
    except RecordValidationError:
        pass
    decoder = _record_decoder(record_type)
    valid, rejected = [], []
    for raw in msgspec.json.decode(body, type=_Page).data:
        try:
            valid.append(decoder.decode(raw))
        except msgspec.ValidationError as error:
            message = str(error)
            where = re.search(r"\$\.(\w+)", message)
            missing = _MISSING.search(message)
            field = missing.group(1) if missing else where.group(1) if where else "?"
            fields = msgspec.json.decode(raw)
            record_id = fields.get("id") if isinstance(fields, dict) else None
            rejected.append(
                Rejected(
                    record_id if isinstance(record_id, int) else None,
                    field,
                    message.split(" - at ")[0],
                    bytes(raw).decode(),
                )
            )
    return valid, rejected


def _explain(
    error: msgspec.ValidationError,
    body: bytes,
    record_type: type[msgspec.Struct],
    endpoint: str,
    page: int,
) -> UpstreamError:
    message = str(error)
    where = _PATH.search(message)
    if where is None:  # the envelope itself is wrong (no "data" list, say)
        return MalformedPageError(endpoint, page, message)
    index, field = int(where.group(1)), where.group(2)
    missing = _MISSING.search(message)
    if missing:
        field = missing.group(1)
    raw = msgspec.json.decode(msgspec.json.decode(body, type=_Page).data[index])
    record_id = (
        raw.get("id", f"<unknown, record #{index} of page {page}>")
        if isinstance(raw, dict)
        else index
    )
    problem = message.split(" - at ")[0]
    return RecordValidationError(endpoint, record_id, field or "?", problem)


@cache
def _page_decoder(record_type: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    page_type = msgspec.defstruct(
        f"{record_type.__name__}Page",
        [("data", list[record_type]), ("next_cursor", str | None, None)],  # type: ignore[valid-type]
    )
    return msgspec.json.Decoder(page_type)


@cache
def _record_decoder(record_type: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(record_type)
