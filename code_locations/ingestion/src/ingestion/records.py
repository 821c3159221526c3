"""The declared schema of every upstream record, and the errors that name what broke.

A page is decoded and validated in one pass (msgspec, in C); a record that misses a field or
carries a wrong type fails the whole batch with the endpoint, the record id and the field.
Timestamps stay text until Postgres parses them during the COPY (several times faster than
building datetimes in Python); a value Postgres rejects is reported the same way.
The raw tables' columns are derived from the same declarations, so the two cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, get_args, get_origin, get_type_hints

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


def endpoint_path(record_type: type[Record]) -> str:
    return f"/api/v1/{record_type.endpoint}"


_PG_TYPES = {int: "bigint", str: "text", float: "double precision"}


def _extra(hint: Any) -> dict[str, Any]:
    if get_origin(hint) is not Annotated:
        return {}
    metas = [m for m in get_args(hint)[1:] if isinstance(m, msgspec.Meta)]
    return {k: v for m in metas for k, v in (m.extra or {}).items()}


def columns(record_type: type[Record]) -> list[tuple[str, str]]:
    """(column, Postgres type) pairs in declaration order."""
    hints = get_type_hints(record_type, include_extras=True)
    result = []
    for name in record_type.__struct_fields__:
        hint = hints[name]
        base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
        result.append((name, _extra(hint).get("postgres", _PG_TYPES[base])))
    return result


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(value: str) -> str:
    """A value as COPY's text format needs it (backslash, tab and line breaks escaped)."""
    return value.translate(_COPY_ESCAPES)


def _line_formatter(record_type: type[Record], escape: bool) -> Callable[[Any], str]:
    hints = get_type_hints(record_type, include_extras=True)
    parts = []
    for name in record_type.__struct_fields__:
        hint = hints[name]
        text = (get_args(hint)[0] if get_origin(hint) is Annotated else hint) is str
        parts.append(f"{{escape(r.{name})}}" if escape and text else f"{{r.{name}}}")
    template = "\\t".join(parts) + "\\n"
    return eval(f'lambda r: f"{template}"', {"escape": copy_escape})  # type: ignore[no-any-return]


class CopyText:
    """Records as COPY text, one line each, with formatters compiled once per record type.

    Escaping every value costs four times the formatting, and almost no value needs it: a page
    is formatted plainly, and only when its tabs, line breaks or backslashes show that some
    value held one is it formatted again with escapes.
    """

    def __init__(self, record_type: type[Record]) -> None:
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
        self.endpoint, self.record_id, self.field = endpoint, record_id, field
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
    body: bytes, record_type: type[Record], endpoint: str, page: int
) -> tuple[list[Any], str | None]:
    """Validated records of one page, and the cursor of the next page."""
    try:
        decoded = _decoders[record_type].decode(body)
        return decoded.data, decoded.next_cursor
    except msgspec.ValidationError as error:
        raise _explain(error, body, record_type, endpoint, page) from error
    except msgspec.DecodeError as error:
        raise MalformedPageError(endpoint, page, str(error)) from error


def _explain(
    error: msgspec.ValidationError, body: bytes, record_type: type[Record], endpoint: str, page: int
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


def _page_decoder(record_type: type[Record]) -> msgspec.json.Decoder[Any]:
    page_type = msgspec.defstruct(
        f"{record_type.__name__}Page",
        [("data", list[record_type]), ("next_cursor", str | None, None)],  # type: ignore[valid-type]
    )
    return msgspec.json.Decoder(page_type)


_decoders = {record_type: _page_decoder(record_type) for record_type in RECORD_TYPES}
