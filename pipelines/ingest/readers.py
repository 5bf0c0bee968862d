"""Read JSONL / JSON / CSV / Parquet files (optionally gzip-compressed) into Polars frames.

Every record keeps its 1-based position: the physical line for JSONL and CSV (the first line of a multi-line CSV
record; lines end at ``\n``, ``\r\n`` or ``\r`` only, as the CSV parser counts them), the record index for a JSON
array, the row index for Parquet. Records that cannot be parsed become :class:`Issue` rows instead of failing the
file; a file that cannot be parsed at all (not text, a CSV header that is not UTF-8, a damaged Parquet file) raises
:class:`IngestError` saying why.

A tabular read yields a :class:`RawTable`: a frame whose columns are the input's top-level fields as strings (JSON
values that are not strings are kept JSON-encoded), plus ``_line`` and ``_raw`` (the record text, for quarantine),
and, for each field that holds values that are not strings, ``_kind.<field>``: what such a value is (``a number``,
``a JSON object``, ...; null where it is a string), so the adapters can reject them instead of storing their text.
A JSON file holding one object that is not a record list (the AnnotatedPairs document) yields a :class:`RawDocument`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.ingest.decode import PARQUET_MAGIC, Decoded, check_text, first_invalid_utf8, read_file
from pipelines.ingest.model import RAW_TEXT_LIMIT, IngestError, Issue

_SURROGATE = re.compile("[\ud800-\udfff]")
KIND_PREFIX = "_kind."
#: the kinds of value that are lists (a message list may be one)
LIST_KINDS = frozenset({"a JSON array", "a list"})

R_NON_UTF8 = "non-UTF-8 bytes"
R_MALFORMED_JSON = "malformed JSON"
R_NOT_OBJECT = "not a JSON object"
R_CSV_FIELDS = "wrong number of CSV fields"
R_TRUNCATED = "record cut off by the end of a truncated gzip stream"


@dataclass
class RawTable:
    """Records of one file as a string frame (+ ``_line``, ``_raw``), and the records that could not be read."""

    frame: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    container: str = "jsonl"
    truncated: bool = False  # read from a gzip stream that ends early

    @property
    def cut_records(self) -> int:
        """Records quarantined because the truncated stream cut them."""
        return sum(i.reason == R_TRUNCATED for i in self.issues)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if not c.startswith("_")]

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.issues)


@dataclass
class RawDocument:
    """A whole-file JSON object (e.g. AnnotatedPairs v2)."""

    data: dict[str, Any]
    container: str = "json"

    @property
    def columns(self) -> list[str]:
        return list(self.data.keys())


def clip(text: str | None) -> str | None:
    """Truncate quarantine text to :data:`RAW_TEXT_LIMIT` characters."""
    return None if text is None else text[:RAW_TEXT_LIMIT]


def sniff_container(data: bytes, path: Path) -> str:
    """``parquet`` | ``json`` | ``jsonl`` | ``csv`` from the content (extension only breaks ties)."""
    if data[:4] == PARQUET_MAGIC:
        return "parquet"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"[":
        return "json"
    if head[:1] == b"{":
        first = data.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0]
        try:
            json.loads(first)
            return "jsonl"
        except ValueError:
            return "json" if _is_whole_json(data) else "jsonl"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    return "csv"


def _is_whole_json(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8", errors="surrogateescape"))
        return True
    except ValueError:
        return False


def read_path(path: Path) -> RawTable | RawDocument:
    """Read one input file into a :class:`RawTable` or :class:`RawDocument` (IngestError: why it cannot be read)."""
    decoded = read_file(path)
    data = decoded.data
    container = sniff_container(data, path)
    if container == "parquet":
        return _read_parquet(decoded)
    check_text(decoded)
    if container == "csv":
        return _read_csv(decoded)
    if container == "json":
        return _read_json(decoded)
    table = _read_jsonl(decoded)
    # a one-line JSON document (e.g. a compact AnnotatedPairs file) is a document, not a record
    if table.frame.height == 1 and not table.issues and {"comparisons", "annotators"} <= set(table.columns):
        return RawDocument(json.loads(table.frame["_raw"][0]), container="json")
    return table


def printable(text: str) -> str:
    """Text decoded with ``surrogateescape`` made storable: undecodable bytes become U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _stringify(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def json_kind(value: Any) -> str | None:
    """What a JSON value that is not a string is, in words (None for strings and null)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a JSON object"
    return "a JSON array" if isinstance(value, list) else f"a {type(value).__name__}"


def has_surrogate(value: Any) -> bool:
    """Whether any string (key or value) in ``value`` holds a byte that was not UTF-8 (decoded as a surrogate)."""
    return any(_SURROGATE.search(v) for v in _walk_strings(value))


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


def _records_to_table(records: list[tuple[int, dict[str, Any], str]], issues: list[Issue], container: str) -> RawTable:
    """Build the string frame from (line, record, raw text) triples, with ``_kind.<field>`` where values are not
    strings."""
    columns: dict[str, list[str | None]] = {}
    kinds: dict[str, list[str | None]] = {}
    n = len(records)
    for i, (_, rec, _) in enumerate(records):
        for key, value in rec.items():
            col = columns.get(key)
            if col is None:
                col = columns[key] = [None] * n
            if value is None or isinstance(value, str):
                col[i] = value
            else:
                col[i] = json.dumps(value, ensure_ascii=False)
                kind = kinds.get(key)
                if kind is None:
                    kind = kinds[key] = [None] * n
                kind[i] = json_kind(value)
    frame = pl.DataFrame(
        {
            "_line": pl.Series([r[0] for r in records], dtype=pl.Int64),
            "_raw": pl.Series([clip(r[2]) for r in records], dtype=pl.String),
            **{k: pl.Series(v, dtype=pl.String) for k, v in columns.items()},
            **{KIND_PREFIX + k: pl.Series(v, dtype=pl.String) for k, v in kinds.items()},
        }
    )
    return RawTable(frame, issues, container)


def _read_jsonl(decoded: Decoded) -> RawTable:
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
    data = decoded.data
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            issues.append(Issue(lineno, R_NON_UTF8, clip(raw.decode("utf-8", errors="replace"))))
            continue
        text = text.rstrip("\r")
        try:
            rec = json.loads(text)
        except ValueError:
            issues.append(Issue(lineno, R_MALFORMED_JSON, clip(text)))
            continue
        if not isinstance(rec, dict):
            issues.append(Issue(lineno, R_NOT_OBJECT, clip(text)))
        elif _SURROGATE.search(text) or ("\\ud" in text.lower() and has_surrogate(rec)):
            issues.append(Issue(lineno, R_NON_UTF8, clip(text)))
        else:
            records.append((lineno, rec, text))
    if decoded.truncated and not data.endswith(b"\n") and issues and issues[-1].line == data.count(b"\n") + 1:
        # the last line is the one the stream's end cut (a line that parses is complete: JSON closes itself)
        issues[-1] = Issue(issues[-1].line, R_TRUNCATED, issues[-1].raw_text)
    table = _records_to_table(records, issues, "jsonl")
    table.truncated = decoded.truncated
    return table


def _read_json(decoded: Decoded) -> RawTable | RawDocument:
    text = decoded.data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        doc = json.loads(text)
    except ValueError:
        # one unparseable document: a single quarantined record covering the file
        reason = R_TRUNCATED if decoded.truncated else R_MALFORMED_JSON
        table = _records_to_table([], [Issue(1, reason, clip(printable(text)))], "json")
        table.truncated = decoded.truncated
        return table
    if isinstance(doc, dict):
        if "comparisons" in doc or "annotators" in doc:
            return RawDocument(doc)
        doc = [doc]
    if not isinstance(doc, list):
        return _records_to_table([], [Issue(1, R_NOT_OBJECT, clip(printable(text)))], "json")
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
    for idx, rec in enumerate(doc, start=1):
        raw = json.dumps(rec, ensure_ascii=False)
        if not isinstance(rec, dict):
            issues.append(Issue(idx, R_NOT_OBJECT, clip(raw)))
        elif has_surrogate(rec):
            issues.append(Issue(idx, R_NON_UTF8, clip(printable(raw))))
        else:
            records.append((idx, rec, raw))
    return _records_to_table(records, issues, "json")


def _read_csv(decoded: Decoded) -> RawTable:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = decoded.data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    # the physical lines exactly as the CSV parser reads them (str.splitlines would also split at U+2028, form
    # feed, 0x1C-0x1E, ... and so disagree with the parser's line numbers)
    physical = io.StringIO(text, newline="").readlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
    header: list[str] | None = None
    prev_end = last_end = 0
    raw = ""
    try:
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            raw = "".join(physical[start - 1 : prev_end]).removesuffix("\n").removesuffix("\r")
            last_end = prev_end
            if header is None:
                header = [h.strip() for h in row]
                if any(_SURROGATE.search(h) for h in header):
                    raise _header_not_utf8(decoded, start)
                continue
            if any(_SURROGATE.search(c) for c in row):
                issues.append(Issue(start, R_NON_UTF8, clip(printable(raw))))
            elif len(row) != len(header):
                issues.append(Issue(start, R_CSV_FIELDS, clip(raw)))
            else:
                records.append((start, dict(zip(header, row)), raw))
    except csv.Error as exc:
        raise IngestError(f"cannot be parsed as CSV at line {reader.line_num}: {exc}") from None
    # the stream's end cut the last record unless the text ends with a line end outside quotes
    cut = decoded.truncated and last_end == reader.line_num and header is not None
    cut = cut and not (text.endswith(("\n", "\r")) and raw.count('"') % 2 == 0)
    if cut and records and (not issues or records[-1][0] > issues[-1].line):
        line, _, text_of_row = records.pop()
        issues.append(Issue(line, R_TRUNCATED, clip(text_of_row)))
    elif cut and issues:
        issues[-1] = Issue(issues[-1].line, R_TRUNCATED, issues[-1].raw_text)
    table = _records_to_table(records, issues, "csv")
    table.truncated = decoded.truncated
    for h in header or []:  # keep header columns even when every row was bad
        if h not in table.frame.columns:
            table.frame = table.frame.with_columns(pl.lit(None, dtype=pl.String).alias(h))
    return table


def _header_not_utf8(decoded: Decoded, line: int) -> IngestError:
    bad = first_invalid_utf8(decoded.data)
    where = f": byte 0x{bad[1]:02X} at byte offset {bad[0]}{decoded.where()}" if bad else ""
    return IngestError(f"line {line} (the CSV header) is not UTF-8{where}; save the file as UTF-8")


def _parquet_kind(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Struct):
        return "a struct"
    if isinstance(dtype, pl.List | pl.Array):
        return "a list"
    if dtype == pl.Boolean:
        return "a boolean"
    if dtype.is_numeric():
        return "a number"
    if dtype.is_temporal():
        return "a date or time"
    return f"of type {dtype}"


def _read_parquet(decoded: Decoded) -> RawTable:
    try:
        df = pl.read_parquet(io.BytesIO(decoded.data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        cut = "; the gzip stream it came in ends early: the file is truncated" if decoded.truncated else ""
        raise IngestError(
            f"not a readable Parquet file: it is damaged or incomplete (the Parquet reader says: {detail}){cut}"
        ) from None
    n = df.height
    out: dict[str, pl.Series] = {
        "_line": pl.Series(range(1, n + 1), dtype=pl.Int64),
        "_raw": df.select(pl.struct(pl.all()).struct.json_encode().str.slice(0, RAW_TEXT_LIMIT)).to_series(),
    }
    for name, dtype in df.schema.items():
        s = df[name]
        if dtype == pl.String:
            out[name] = s
        elif dtype.is_nested():
            out[name] = pl.Series(name, [_stringify(v) for v in s.to_list()], dtype=pl.String)
        else:
            out[name] = s.cast(pl.String)
        if dtype != pl.String:
            kind = pl.lit(_parquet_kind(dtype), dtype=pl.String)
            out[KIND_PREFIX + name] = df.select(pl.when(pl.col(name).is_not_null()).then(kind)).to_series()
    return RawTable(pl.DataFrame(out), [], "parquet")
