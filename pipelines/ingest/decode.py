"""The bytes of one input file: read, gunzipped when they are gzip, and checked to be data a reader can parse.

Problems are raised as :class:`IngestError` in plain words, with the byte offset where it is known; the caller adds
the file name. A gzip stream that ends early is not an error here: :attr:`Decoded.truncated` says so and the readers
quarantine the record it cuts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from pipelines.ingest.model import IngestError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_CHUNK = 1 << 16
_BINARY_SCAN = 8192
EXPECTED = "not JSONL, JSON, CSV or Parquet"

#: leading bytes of file types people mistake for data files, and what to call them
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one: export the sheet as CSV)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Office document (.xls/.doc: export it as CSV)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it, or recompress it with gzip)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it, or recompress it with gzip)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1", "an Arrow IPC / Feather file (write it as Parquet)"),
)

#: zlib's words for a corrupt stream, in plain ones
_ZLIB_PLAIN = {
    "incorrect data check": "its checksum does not match the data",
    "incorrect length check": "the length recorded at its end does not match the data",
    "incorrect header check": "its header is damaged",
    "unknown compression method": "its header is damaged",
    "header crc mismatch": "its header is damaged",
}


@dataclass(frozen=True)
class Decoded:
    """The data of one file (decompressed when it was gzip) and what decompression found."""

    data: bytes
    gzip: bool = False
    truncated: bool = False  # the gzip stream ends before its end marker: the last record may be cut
    compressed_size: int = 0

    def where(self) -> str:
        """How to read a byte offset into :attr:`data`: of the file, or of the decompressed data."""
        return " of the decompressed data" if self.gzip else ""


def read_file(path: Path) -> Decoded:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the extension)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read the file: {(exc.strerror or str(exc)).lower()}") from None
    if raw[:2] != GZIP_MAGIC:
        return Decoded(raw)
    data, truncated = gunzip(raw)
    return Decoded(data, gzip=True, truncated=truncated, compressed_size=len(raw))


def gunzip(raw: bytes) -> tuple[bytes, bool]:
    """Every member of a gzip stream, and whether the last one ends early (truncated).

    Zero padding after the last member is ignored (as :mod:`gzip` does); anything else there is an error, and so is
    corrupt data, named by the byte offset where zlib detects it.
    """
    out: list[bytes] = []
    pos = 0
    while True:
        dec = zlib.decompressobj(wbits=31)
        while pos < len(raw) and not dec.eof:
            chunk = raw[pos : pos + _CHUNK]
            before = dec.copy()
            try:
                out.append(dec.decompress(chunk))
            except zlib.error as exc:
                raise _corrupt(before, chunk, pos, out, exc) from None
            pos += len(chunk) - (len(dec.unused_data) if dec.eof else 0)
        if not dec.eof:
            try:
                out.append(dec.flush())
            except zlib.error:
                pass
            return b"".join(out), True
        rest = raw[pos:]
        if not rest.strip(b"\x00"):
            return b"".join(out), False
        if rest[:2] != GZIP_MAGIC:
            raise IngestError(
                f"unexpected data after the end of the gzip stream at byte {pos} of the file "
                f"({sum(map(len, out))} bytes were decompressed before it)"
            )


def _corrupt(dec: zlib._Decompress, chunk: bytes, pos: int, out: list[bytes], exc: zlib.error) -> IngestError:
    """The error for corrupt gzip data in ``chunk`` (at file offset ``pos``), located to the byte."""
    offset = pos
    for i in range(len(chunk)):
        try:
            out.append(dec.decompress(chunk[i : i + 1]))
        except zlib.error:
            offset = pos + i
            break
    detail = str(exc).rsplit(": ", 1)[-1]
    why = _ZLIB_PLAIN.get(detail, f"the compressed data is invalid: zlib reports '{detail}'")
    lines = b"".join(out).count(b"\n")
    return IngestError(
        f"the gzip data is corrupt at byte {offset} of the file ({why}); "
        f"{lines} complete lines could be decompressed before it"
    )


def check_text(decoded: Decoded) -> None:
    """Raise when the data is plainly not text: a known binary file type, or a NUL byte near the start."""
    data = decoded.data
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IngestError("it is UTF-16 text: JSONL, JSON and CSV must be UTF-8; save it as UTF-8")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise IngestError(f"not a text file: it is {what}, {EXPECTED}")
    if data[4:8] == b"DUCK":
        raise IngestError(f"not a text file: it is a DuckDB database, {EXPECTED}")
    if data.startswith(b"BZh") and data[4:10] == b"1AY&SY":
        raise IngestError(f"not a text file: it is bzip2-compressed data (recompress it with gzip), {EXPECTED}")
    nul = data.find(b"\x00", 0, _BINARY_SCAN)
    if nul >= 0:
        raise IngestError(
            f"not a text file: binary data (a NUL byte at byte offset {nul}{decoded.where()}), {EXPECTED}"
        )


def first_invalid_utf8(data: bytes) -> tuple[int, int] | None:
    """``(byte offset, byte value)`` of the first byte that is not valid UTF-8, or None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start, data[exc.start]
    return None
