"""Read JSONL / JSON / CSV / Parquet files (optionally gzip-compressed) into Polars frames.

Every record keeps its 1-based position: the physical line for JSONL and CSV (the first line of a multi-line CSV
record), the record index for a JSON array, the row index for Parquet. Records that cannot be parsed become
:class:`Issue` rows instead of failing the file.

A tabular read yields a :class:`RawTable`: a frame whose columns are the input's top-level fields as strings (JSON
values that are not strings are kept JSON-encoded), plus ``_line`` and ``_raw`` (the record text, for quarantine).
A JSON file holding one object that is not a record list (the AnnotatedPairs document) yields a :class:`RawDocument`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.ingest.model import RAW_TEXT_LIMIT, Issue

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_SURROGATE = re.compile("[\ud800-\udfff]")

R_NON_UTF8 = "non-UTF-8 bytes"
R_MALFORMED_JSON = "malformed JSON"
R_NOT_OBJECT = "not a JSON object"
R_CSV_FIELDS = "wrong number of CSV fields"


@dataclass
class RawTable:
    """Records of one file as a string frame (+ ``_line``, ``_raw``), and the records that could not be read."""

    frame: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    container: str = "jsonl"

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


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the extension).

    A truncated gzip stream yields what could be decompressed; the cut record then fails to parse downstream.
    """
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        return zlib.decompressobj(wbits=31).decompress(data)


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
    """Read one input file into a :class:`RawTable` or :class:`RawDocument`."""
    data = read_bytes(path)
    container = sniff_container(data, path)
    if container == "parquet":
        return _read_parquet(data)
    if container == "csv":
        return _read_csv(data)
    if container == "json":
        return _read_json(data)
    table = _read_jsonl(data)
    # a one-line JSON document (e.g. a compact AnnotatedPairs file) is a document, not a record
    if table.frame.height == 1 and not table.issues and {"comparisons", "annotators"} <= set(table.columns):
        return RawDocument(json.loads(table.frame["_raw"][0]), container="json")
    return table


def _printable(text: str) -> str:
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


def _has_surrogate(record: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and _SURROGATE.search(v) for v in _walk_strings(record))


def _walk_strings(value: Any):  # noqa: ANN202 - generator of str
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
    """Build the string frame from (line, record, raw text) triples."""
    columns: dict[str, list[str | None]] = {}
    n = len(records)
    for i, (_, rec, _) in enumerate(records):
        for key, value in rec.items():
            col = columns.get(key)
            if col is None:
                col = columns[key] = [None] * n
            col[i] = _stringify(value)
    frame = pl.DataFrame(
        {
            "_line": pl.Series([r[0] for r in records], dtype=pl.Int64),
            "_raw": pl.Series([clip(r[2]) for r in records], dtype=pl.String),
            **{k: pl.Series(v, dtype=pl.String) for k, v in columns.items()},
        }
    )
    return RawTable(frame, issues, container)


def _read_jsonl(data: bytes) -> RawTable:
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
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
        elif _SURROGATE.search(text) or ("\\ud" in text.lower() and _has_surrogate(rec)):
            issues.append(Issue(lineno, R_NON_UTF8, clip(text)))
        else:
            records.append((lineno, rec, text))
    return _records_to_table(records, issues, "jsonl")


def _read_json(data: bytes) -> RawTable | RawDocument:
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        doc = json.loads(text)
    except ValueError:
        # one unparseable document: a single quarantined record covering the file
        return _records_to_table([], [Issue(1, R_MALFORMED_JSON, clip(_printable(text)))], "json")
    if isinstance(doc, dict):
        if "comparisons" in doc or "annotators" in doc:
            return RawDocument(doc)
        doc = [doc]
    if not isinstance(doc, list):
        return _records_to_table([], [Issue(1, R_NOT_OBJECT, clip(_printable(text)))], "json")
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
    for idx, rec in enumerate(doc, start=1):
        raw = json.dumps(rec, ensure_ascii=False)
        if not isinstance(rec, dict):
            issues.append(Issue(idx, R_NOT_OBJECT, clip(raw)))
        elif _has_surrogate(rec):
            issues.append(Issue(idx, R_NON_UTF8, clip(_printable(raw))))
        else:
            records.append((idx, rec, raw))
    return _records_to_table(records, issues, "json")


def _read_csv(data: bytes) -> RawTable:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    physical = text.splitlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, dict[str, Any], str]] = []
    issues: list[Issue] = []
    header: list[str] | None = None
    prev_end = 0
    for row in reader:
        start, prev_end = prev_end + 1, reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        raw = "\n".join(physical[start - 1 : prev_end])
        if header is None:
            header = [h.strip() for h in row]
            continue
        if any(_SURROGATE.search(c) for c in row):
            issues.append(Issue(start, R_NON_UTF8, clip(_printable(raw))))
        elif len(row) != len(header):
            issues.append(Issue(start, R_CSV_FIELDS, clip(raw)))
        else:
            records.append((start, dict(zip(header, row)), raw))
    table = _records_to_table(records, issues, "csv")
    for h in header or []:  # keep header columns even when every row was bad
        if h not in table.frame.columns:
            table.frame = table.frame.with_columns(pl.lit(None, dtype=pl.String).alias(h))
    return table


def _read_parquet(data: bytes) -> RawTable:
    df = pl.read_parquet(io.BytesIO(data))
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
    return RawTable(pl.DataFrame(out), [], "parquet")
