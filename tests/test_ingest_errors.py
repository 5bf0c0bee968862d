"""Unreadable and mistyped input (issue 11, items 6-9 and 14): clear errors that name the file and the cause, each
file committed on its own with a per-file summary, the run always closed, wrong types quarantined, and quarantine
evidence that shows the rejected row. Real files in tmp_path, the real ingest path into a real DuckDB file."""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.core.warehouse import connect
from pipelines.ingest import IngestError, IngestSummary, ingest_paths
from tests.conftest import preflens

#: what a message must never be made of: Python class names and raw library messages
RAW_NOISE = ("UnicodeEncodeError", "UnicodeDecodeError", "surrogates", "ComputeError", "Error -3", "zlib.error")


def rec(i: int, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt": f"prompt {i}",
        "response_a": f"answer a {i} " * 8,
        "response_b": f"answer b {i} " * 8,
        "winner": "ab"[i % 2],
        "mechanism": "human:raters",
        "mechanism_type": "human",
        "domain": "coding",
    }
    out.update(kw)
    return out


def jsonl(path: Path, records: list[dict[str, Any]], gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture()
def con(tmp_path: Path):
    c = connect(tmp_path / "wh" / "preflens.duckdb")
    yield c
    c.close()


def q(con, sql: str, *params: Any) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def run_row(con) -> tuple:
    rows = q(
        con,
        "select status, reason, finished_at is not null, rows_read, rows_loaded, rows_quarantined "
        "from raw.ingest_runs order by started_at",
    )
    assert len(rows) == 1, rows
    return rows[0]


def png(path: Path) -> Path:
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
    path.write_bytes(head + zlib.compress(bytes(range(256)) * 4) + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    return path


def latin1_header_csv(path: Path) -> Path:
    path.write_bytes(
        b"prompt,response_a,response_b,winner,mechanism,caf\xe9\n"
        b"p1,one answer,another answer,a,human:x,1\n"
        b"p2,third answer,fourth answer,b,human:x,2\n"
    )
    return path


def corrupt_parquet(path: Path) -> Path:
    pl.DataFrame([rec(i) for i in range(20)]).write_parquet(path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")  # the Thrift metadata sits just before its length and PAR1
    start = len(data) - 8 - footer
    data[start : start + footer] = bytes(b ^ 0x5A for b in data[start : start + footer])
    path.write_bytes(bytes(data))
    return path


def corrupt_gzip(path: Path) -> Path:
    blob = bytearray(gzip.compress("".join(json.dumps(rec(i)) + "\n" for i in range(200)).encode()))
    for k in range(len(blob) // 2, len(blob) // 2 + 32):
        blob[k] ^= 0xFF
    path.write_bytes(bytes(blob))
    return path


def assert_clean(message: str) -> None:
    for noise in RAW_NOISE:
        assert noise not in message, message


# --------------------------------------------------------------------------------------------- item 6


def test_png_renamed_csv_names_the_file_and_the_cause(con, tmp_path: Path) -> None:
    bad = png(tmp_path / "pairs.csv")
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [bad])
    msg = str(exc.value)
    assert str(bad.resolve()) in msg and "not a text file" in msg and "PNG image" in msg, msg
    assert_clean(msg)
    status, reason, closed, *_ = run_row(con)
    assert (status, closed) == ("failed", True) and "PNG image" in reason


def test_latin1_byte_in_csv_header_names_line_and_offset(con, tmp_path: Path) -> None:
    bad = latin1_header_csv(tmp_path / "latin.csv")
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [bad])
    msg = str(exc.value)
    assert str(bad.resolve()) in msg and "header" in msg and "line 1" in msg, msg
    offset = bad.read_bytes().index(b"\xe9")
    assert "not UTF-8" in msg and f"byte 0xE9 at byte offset {offset}" in msg, msg
    assert_clean(msg)


def test_latin1_byte_in_annotated_pairs_document_is_quarantined(con, tmp_path: Path) -> None:
    doc = {
        "metadata": {"version": "2.0", "dataset_name": "toy", "default_annotator": "h1"},
        "annotators": {"h1": {"name": "alice", "type": "human"}},
        "comparisons": [
            {
                "id": f"c{i}",
                "prompt": "PROMPT-X" if i == 0 else f"q{i}",
                "response_a": {"text": f"alpha {i}"},
                "response_b": {"text": f"beta {i}"},
                "annotations": {"h1": {"pref": "a"}},
            }
            for i in range(3)
        ],
    }
    path = tmp_path / "ap.json"
    path.write_bytes(json.dumps(doc).encode().replace(b"PROMPT-X", b"caf\xe9"))
    s = ingest_paths(con, [path])
    assert (s.rows_read, s.loaded, s.quarantined) == (3, 2, 1)
    assert q(con, "select source_line, reason, raw_text like '%caf\ufffd%' from raw.quarantine") == [
        (1, "non-UTF-8 bytes", True)
    ]


def test_corrupt_parquet_names_the_file_and_the_cause(con, tmp_path: Path) -> None:
    bad = corrupt_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [bad])
    msg = str(exc.value)
    assert str(bad.resolve()) in msg and "not a readable Parquet file" in msg and "damaged" in msg, msg


def test_corrupt_gzip_names_the_file_and_the_byte_offset(con, tmp_path: Path) -> None:
    bad = corrupt_gzip(tmp_path / "pairs.jsonl.gz")
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [bad])
    msg = str(exc.value)
    assert str(bad.resolve()) in msg and "gzip data is corrupt at byte" in msg, msg
    offset = int(msg.split("corrupt at byte ")[1].split()[0].rstrip(",;"))
    assert len(bad.read_bytes()) // 2 <= offset < len(bad.read_bytes())
    assert_clean(msg)
    assert q(con, "select count(*) from raw.labels") == [(0,)]


def test_several_files_each_committed_with_a_per_file_summary(con, tmp_path: Path) -> None:
    ok1 = jsonl(tmp_path / "ok1.jsonl", [rec(i) for i in range(3)])
    ok2 = jsonl(tmp_path / "ok2.jsonl", [rec(i) for i in range(10, 14)])
    bads = [
        png(tmp_path / "img.csv"),
        latin1_header_csv(tmp_path / "latin.csv"),
        corrupt_parquet(tmp_path / "bad.parquet"),
        corrupt_gzip(tmp_path / "bad.jsonl.gz"),
    ]
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [ok1, *bads, ok2])
    msg = str(exc.value)
    assert msg.startswith("4 of 6 files failed"), msg
    for bad in bads:
        assert str(bad.resolve()) in msg
    assert_clean(msg)
    summary = exc.value.summary
    assert isinstance(summary, IngestSummary)
    assert [f.path for f in summary.files] == [str(p.resolve()) for p in (ok1, *bads, ok2)]
    # the file after the bad ones was read too, and each good file is committed with its counts
    assert [(f.loaded, f.error is None) for f in summary.files] == [(3, True)] + [(0, False)] * 4 + [(4, True)]
    assert q(con, "select count(*) from raw.labels") == [(7,)]
    lines = summary.lines()
    assert sum("failed, nothing loaded" in line for line in lines) == 4, lines
    status, reason, closed, read, loaded, quarantined = run_row(con)
    assert (status, closed, read, loaded, quarantined) == ("failed", True, 7, 7, 0)
    assert reason == msg


def test_interrupted_ingest_closes_the_run_with_what_was_committed(con, tmp_path: Path) -> None:
    ok1 = jsonl(tmp_path / "ok1.jsonl", [rec(i) for i in range(3)])
    ok2 = jsonl(tmp_path / "ok2.jsonl", [rec(i) for i in range(10, 14)])

    def stop_at_second_file(message: str) -> None:
        if message.startswith("reading") and message.endswith("ok2.jsonl"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_paths(con, [ok1, ok2], progress=stop_at_second_file)
    status, reason, closed, read, loaded, _ = run_row(con)
    assert (status, closed, read, loaded) == ("interrupted", True, 3, 3)
    assert "ok2.jsonl" in reason and "interrupted" in reason
    assert q(con, "select count(*) from raw.labels") == [(3,)]


def test_cli_several_bad_files_prints_every_file_and_exits_1(tmp_path: Path) -> None:
    ok = jsonl(tmp_path / "ok.jsonl", [rec(i) for i in range(3)])
    bads = [png(tmp_path / "img.csv"), corrupt_parquet(tmp_path / "bad.parquet"), corrupt_gzip(tmp_path / "b.gz")]
    res = preflens(tmp_path / "wh", "ingest", str(ok), *map(str, bads))
    out, err = " ".join(res.stdout.split()), " ".join(res.stderr.split())  # however the console wraps
    assert res.returncode == 1, res
    assert "Traceback" not in err
    for noise in RAW_NOISE:
        assert noise not in out + err
    for bad in bads:
        assert f"{bad.resolve()}: failed, nothing loaded" in out
        assert str(bad.resolve()) in err
    assert f"{ok.resolve()} [canonical]: read 3, loaded 3" in out
    # the good file is committed: ingesting it again finds its rows already there
    again = preflens(tmp_path / "wh", "ingest", str(ok))
    assert again.returncode == 0 and "read 3, loaded 0, duplicates 3" in " ".join(again.stdout.split()), again


# --------------------------------------------------------------------------------------------- item 7


def test_truncated_gzip_warns_with_rows_read(con, tmp_path: Path) -> None:
    text = "".join(json.dumps(rec(i)) + "\n" for i in range(20)).encode()
    blob = gzip.compress(text)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) * 6 // 10])
    complete = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    n_complete = complete.count(b"\n")
    s = ingest_paths(con, [path])
    f = s.files[0]
    assert f.rows_read == n_complete + 1 and f.loaded == n_complete and f.quarantined == 1
    assert len(f.warnings) == 1
    warning = f.warnings[0]
    assert "truncated" in warning and f"read {f.rows_read} rows" in warning and "ends early" in warning, warning
    assert any("warning" in line and "truncated" in line for line in s.lines())
    assert q(con, "select source_line, reason from raw.quarantine") == [
        (n_complete + 1, "record cut off by the end of a truncated gzip stream")
    ]
    status, reason, closed, *_ = run_row(con)
    assert (status, closed) == ("completed_with_warnings", True) and "truncated" in reason


def test_truncated_gzip_csv_never_loads_the_cut_row(con, tmp_path: Path) -> None:
    rows = "".join(f"p{i},{'long answer a ' * 20}{i},{'long answer b ' * 20}{i},a,human:x\n" for i in range(30))
    blob = gzip.compress(("prompt,response_a,response_b,winner,mechanism\n" + rows).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(blob[: len(blob) * 6 // 10])
    complete = zlib.decompressobj(wbits=31).decompress(path.read_bytes()).decode(errors="replace")
    s = ingest_paths(con, [path])
    f = s.files[0]
    assert f.loaded == complete.count("\n") - 1  # the header, then only complete rows
    (reason, raw), *_ = q(con, "select reason, raw_text from raw.quarantine")
    assert reason == "record cut off by the end of a truncated gzip stream"
    assert raw == complete.rsplit("\n", 1)[1]
    # the stored responses are the full ones
    assert q(con, "select min(length(response_a)) from raw.items")[0][0] >= len("long answer a " * 20)


# --------------------------------------------------------------------------------------------- item 8


def test_wrong_types_are_quarantined_not_coerced(con, tmp_path: Path) -> None:
    records = [rec(0, response_a={"text": "obj"}), rec(1, prompt=12345), rec(2), rec(3, winner=1)]
    lines = jsonl(tmp_path / "types.jsonl", records)
    array = tmp_path / "types.json"
    array.write_text(json.dumps([rec(10, response_b=["x", "y"]), rec(11, prompt=True), rec(12)]))
    s = ingest_paths(con, [lines, array])
    assert [(f.loaded, f.quarantined) for f in s.files] == [(1, 3), (1, 2)]
    got = q(con, "select source_file, source_line, reason from raw.quarantine order by all")
    assert got == sorted(
        [
            (str(lines.resolve()), 1, "response_a is a JSON object, expected text"),
            (str(lines.resolve()), 2, "prompt is a number, expected text"),
            (str(lines.resolve()), 4, "winner is a number, expected text"),
            (str(array.resolve()), 1, "response_b is a JSON array, expected text"),
            (str(array.resolve()), 2, "prompt is a boolean, expected text"),
        ]
    )
    assert q(con, "select count(*) from raw.items where prompt = '12345' or response_a like '%obj%'") == [(0,)]


def test_wrong_types_in_parquet_and_hf(con, tmp_path: Path) -> None:
    pq = tmp_path / "typed.parquet"
    pl.DataFrame({**{k: [v] * 2 for k, v in rec(0).items()}, "prompt": [12345, 67890]}).write_parquet(pq)
    hf = jsonl(
        tmp_path / "hf.jsonl",
        [
            {"prompt": "p1", "chosen": {"text": "obj"}, "rejected": "r1"},
            {"prompt": "p2", "chosen": "c2", "rejected": [1, 2]},
            {"prompt": "p3", "chosen": [{"role": "assistant", "content": "c3"}], "rejected": "r3"},
            {"prompt": "p4", "chosen": "c4", "rejected": "r4", "id": {"n": 4}},
            {"prompt": "p5", "chosen": "c5", "rejected": "r5", "id": 5},  # a number id is kept, as its text
        ],
    )
    with pytest.raises(IngestError, match="no usable rows"):
        ingest_paths(con, [pq])
    s = ingest_paths(con, [hf], mechanism="human:x")
    assert (s.loaded, s.quarantined) == (2, 3)
    got = q(con, "select source_line, reason from raw.quarantine where source_file = ? order by 1", str(hf.resolve()))
    assert got == [
        (1, "chosen is a JSON object, expected text or a message list"),
        (2, "rejected is a JSON array, not a message list"),
        (4, "id is a JSON object, expected text or a number"),
    ]
    assert q(con, "select source_item_id from raw.items where prompt = 'p5'") == [("5",)]
    assert q(con, "select distinct reason from raw.quarantine where source_file = ?", str(pq.resolve())) == [
        ("prompt is a number, expected text",)
    ]


# --------------------------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("sep", ["\u2028", "\x0c", "\x1c", "\x85", "\x0b"])
def test_quarantine_evidence_is_the_rejected_csv_row(con, tmp_path: Path, sep: str) -> None:
    path = tmp_path / "odd.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response_a", "response_b", "winner", "mechanism"])
        for i in range(2, 11):  # lines 2-10, each with the separator inside a field
            w.writerow([f"p{i}", f"first{sep}half {i}", f"other {i}", "a", "human:x"])
        w.writerow(["p-bad", "r-bad", "s-bad", "zzz", "human:x"])  # line 11
        w.writerow(["p12", f"x{sep}y", "z", "b", "human:x"])
    s = ingest_paths(con, [path])
    assert (s.loaded, s.quarantined) == (10, 1)
    assert q(con, "select source_line, reason, raw_text from raw.quarantine") == [
        (11, "unknown winner value", "p-bad,r-bad,s-bad,zzz,human:x")
    ]
    assert sorted(x for (x,) in q(con, "select source_line from raw.labels")) == [*range(2, 11), 12]


# --------------------------------------------------------------------------------------------- item 14


def test_directory_is_reported_as_a_directory(con, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    jsonl(folder / "a.jsonl", [rec(1)])
    with pytest.raises(IngestError) as exc:
        ingest_paths(con, [folder])
    msg = str(exc.value)
    assert f"{folder} is a directory" in msg and "not found" not in msg, msg
    with pytest.raises(IngestError, match="input file not found: .*nope.jsonl"):
        ingest_paths(con, [folder / "nope.jsonl"])
    assert q(con, "select count(*) from raw.ingest_runs") == [(0,)]  # nothing started


# ------------------------------------------------------------------ `preflens run` reports a truncated stream too


def _no_llm_env(**kw: str) -> dict[str, str]:
    """This environment without any LLM configuration (the run then annotates offline unless told otherwise)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLENS_LLM")}
    env.update(COLUMNS="200", **kw)
    return env


def test_run_shows_the_truncated_gzip_warning_that_ingest_shows(tmp_path: Path) -> None:
    """The ingest stage of `preflens run` prints the warning `preflens ingest` prints. The run is stopped right after
    it, in the annotate stage (`--annotator llm` with no LLM configured), so no dbt build is needed to see it."""
    import subprocess

    from tests.conftest import venv_bin

    data = "".join(json.dumps(rec(i)) + "\n" for i in range(40)).encode()
    packed = gzip.compress(data)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: int(len(packed) * 0.6)])
    ingest = preflens(tmp_path / "wh_ingest", "ingest", str(cut))
    assert ingest.returncode == 0, ingest.stderr
    (warning,) = [line.strip() for line in ingest.stdout.splitlines() if "warning:" in line]
    assert "the gzip stream ends early" in warning

    run = subprocess.run(
        [venv_bin("preflens"), "run", str(cut), "--annotator", "llm"],
        env=_no_llm_env(PREFLENS_WAREHOUSE=str(tmp_path / "wh_run")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "annotate failed" in run.stderr, run.stdout + run.stderr
    shown = warning.removeprefix("warning: ")  # the same words, the file named
    assert shown in run.stdout, run.stdout
    ingest_row = next(line for line in run.stdout.splitlines() if "ingest" in line and "loaded" in line)
    assert "1 warning" in ingest_row, ingest_row
