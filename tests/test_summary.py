"""The terminal summary and what `preflens run` prints: names from the data are printed literally, whatever they
contain (issue 11.4), and the layout reads well at 80 columns and in a log (issue 11.5)."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from pipelines.core.config import SAMPLE_PATH, Paths
from pipelines.core.console import make_console
from pipelines.serve.summary import load_summary, render_summary
from tests.conftest import CHEAP_BUILD_ARGS, HOSTILE_MECHANISM, env_with, preflens, venv_bin, write_mini_served

#: a mechanism name that is Rich markup (a closing tag with nothing to close, a link), the issue's example
MARKUP_MECHANISM = "human:[/] raters [link=http://x]"
#: a concept name that is markup, an emoji code and ends with a backslash (Rich's escape() doubles it)
MARKUP_CONCEPT = "[bold red]Clarity[/] :thumbs_up: \\"
MARKUP_DOMAIN = "[i]legal"


def _rename(con: duckdb.DuckDBPyConnection, column: str, old: str, new: str) -> None:
    """Rename one value of ``column`` (and of ``column_a`` / ``column_b``) in every mart that has it."""
    rows = con.execute(
        "select table_name, column_name from information_schema.columns where table_schema = 'marts' "
        "and column_name in (?, ?, ?)",
        [column, f"{column}_a", f"{column}_b"],
    ).fetchall()
    for table, col in rows:
        con.execute(f'update marts."{table}" set "{col}" = ? where "{col}" = ?', [new, old])


@pytest.fixture
def hostile_served(tmp_path: Path) -> Path:
    """The tiny served copy of conftest with markup for names, and the columns the summary reads."""
    db = tmp_path / "serve" / "preflens.duckdb"
    db.parent.mkdir()
    write_mini_served(db)
    con = duckdb.connect(str(db))
    try:
        con.execute("alter table marts.fct_model_metrics add column variant varchar default 'hmdr'")
        con.execute("alter table marts.fct_concept_effects add column control varchar default 'none'")
        _rename(con, "mechanism", "human:raters", MARKUP_MECHANISM)
        _rename(con, "concept", "Clarity", MARKUP_CONCEPT)
        _rename(con, "domain", "legal", MARKUP_DOMAIN)
    finally:
        con.close()
    return db


def _render(db: Path, console: Console) -> str:
    rep, summaries = load_summary(db)
    render_summary(summaries, console, rep)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("terminal", [True, False])
def test_summary_prints_markup_in_names_literally(hostile_served: Path, width: int, terminal: bool) -> None:
    # a default Rich console (markup and emoji on): the summary itself never hands it markup to parse
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)
    out = _render(hostile_served, console)
    flat = " ".join(out.split())
    assert MARKUP_MECHANISM in out
    assert MARKUP_CONCEPT.strip() in flat and "👍" not in out
    assert f"{MARKUP_DOMAIN} [shared b only]" in flat  # the legal domain has no own weights in the fixture
    assert "'shared b only'" not in out and "[shared b only]: too few pairs" in flat


def test_summary_layouts(hostile_served: Path) -> None:
    wide = _render(hostile_served, Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None))
    assert "largest domain #1" in wide and "┃" in wide  # the table when every name fits on one line
    narrow = _render(hostile_served, Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None))
    assert "largest domain #1" not in narrow and all(len(ln) <= 80 for ln in narrow.splitlines())
    for mech in (MARKUP_MECHANISM, HOSTILE_MECHANISM, "reward:rm"):  # each name whole on one line
        assert any(mech in ln for ln in narrow.splitlines()), mech
    # not a terminal: the same blocks, never wrapped (one line per domain)
    piped = _render(hostile_served, make_console(file=io.StringIO(), width=80))
    assert len(piped.splitlines()) < len(narrow.splitlines())
    assert any(len(ln) > 80 for ln in piped.splitlines())


# ------------------------------------------------------------------ a real warehouse with hostile names


def _write_hostile_pairs(path: Path, n: int = 200) -> None:
    """The pairs of one sample mechanism again, judged by a mechanism whose name is markup."""
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    source = next(iter({r["mechanism"] for r in rows if r["mechanism"].startswith("human:hh")}))
    picked = [r for r in rows if r["mechanism"] == source][:n]
    with path.open("w", encoding="utf-8") as out:
        for r in picked:
            r = {**r, "mechanism": MARKUP_MECHANISM}
            r.pop("pair_id", None)
            out.write(json.dumps(r) + "\n")


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """`preflens run` of the sample plus a hostile file, in a warehouse whose path is markup too."""
    root = tmp_path_factory.mktemp("hostile")
    wh = root / "wh [/] [link=http://evil.example]y :thumbs_up:"  # "/" nests folders: still one path
    src = root / "[red]pairs[bold] :x:.jsonl"
    _write_hostile_pairs(src)
    return wh, src, preflens(wh, "run", str(SAMPLE_PATH), str(src), *CHEAP_BUILD_ARGS)


@pytest.mark.slow
def test_run_and_summary_with_hostile_names(hostile_run: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    wh, src, proc = hostile_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert str(src) in out and MARKUP_MECHANISM in out and "[shared b only]" in out
    assert f"Served copy for SQL/BI: {Paths(warehouse=wh).serve_db}" in out
    assert str(Paths(warehouse=wh).serve_db) in out  # the publish stage's note
    summary = preflens(wh, "summary")
    assert summary.returncode == 0, summary.stderr
    assert MARKUP_MECHANISM in summary.stdout and "[shared b only]" in summary.stdout


def _mechanisms(serve_db: Path) -> list[str]:
    con = duckdb.connect(str(serve_db), read_only=True)
    try:
        return [r[0] for r in con.execute("select distinct mechanism from marts.fct_model_metrics").fetchall()]
    finally:
        con.close()


@pytest.mark.slow
def test_summary_reads_well_at_80_columns(hostile_run: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    wh, _, proc = hostile_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    serve_db = Paths(warehouse=wh).serve_db
    mechanisms = _mechanisms(serve_db)
    assert MARKUP_MECHANISM in mechanisms and len(mechanisms) >= 15
    # on an 80-column terminal: nothing wider than 80, every name whole on one line, no word broken
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    text = _render(serve_db, console)
    lines = text.splitlines()
    assert all(len(ln) <= 80 for ln in lines)
    for mech in mechanisms:
        assert any(mech in ln for ln in lines), mech
    rep, summaries = load_summary(serve_db)
    words = {w for s in summaries for top in s.top_by_domain for c, _ in top.concepts for w in c.split()}
    printed = set(re.split(r"[\s,]+", text))
    assert words <= printed, words - printed
    assert len(lines) <= 10 * len(mechanisms) + 12, len(lines)  # the old table: 15 lines per mechanism
    # piped to a log at the default 80 columns: every domain of a mechanism on one line of its own
    env = env_with(PREFLENS_WAREHOUSE=str(wh))
    env.pop("COLUMNS", None)
    piped = subprocess.run([venv_bin("preflens"), "summary"], env=env, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    for s in summaries:
        for top in s.top_by_domain:
            head = f"{top.domain}{'' if top.own_weights else ' [shared b only]'} (n={top.n_pairs}): "
            assert any(ln.strip().startswith(head) and top.concepts[-1][0] in ln for ln in piped.stdout.splitlines())
