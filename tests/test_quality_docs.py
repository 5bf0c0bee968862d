"""The HTML page of a quality run: written beside the warehouse, lists every suite and the failing expectations."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipelines.build.quality import SUITES, QualityReport, QualityResult, run_quality_checks, write_quality_report
from pipelines.core.config import Paths
from tests.quality_db import WEIRD, build_fixture_db, mutate


class _Rows(HTMLParser):
    """Collects the cells of every table row, and the external references (there must be none)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith("#"):
                self.external.append(v)
        if tag in ("script", "link"):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Rows:
    p = _Rows()
    p.feed(text)
    return p


@pytest.fixture
def build_db(tmp_path: Path) -> Path:
    return build_fixture_db(tmp_path / "warehouse" / "preflens.duckdb")


def test_failing_run_page_lists_failing_expectations_with_observed_values(build_db: Path) -> None:
    mutate(build_db, "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'")
    mutate(build_db, "update marts.fct_concept_effects set n_pairs = 5 where domain = 'code'")
    report = run_quality_checks(build_db)
    assert not report.success

    paths = Paths(warehouse=build_db.parent)
    out = write_quality_report(report, paths.quality_report, build_id="20260101T000000Z-abc123")
    assert out == (build_db.parent / "quality" / "index.html").resolve() and out.exists()
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]

    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    assert "20260101T000000Z-abc123" in text and "not published" in text
    parsed = _parse(text)
    assert parsed.external == []  # self-contained
    failed = [r for r in parsed.rows if r and r[0] == "FAILED"]
    assert len(failed) == len(report.failures())
    by_col = {r[2]: r for r in failed}
    assert "expect_column_values_to_be_between" in by_col["prob_a"][1] and "1.3" in by_col["prob_a"][4]
    assert "max_value=1.0" in by_col["prob_a"][3]
    assert "/ code (5 pairs)" in by_col["n_pairs"][4]
    # every suite has a section; failing ones come first and are open
    for s in SUITES:
        assert f'id="suite-{s.name}"' in text
    first = re.search(r'<details id="suite-([^"]+)"( open)?>', text)
    assert first is not None and first.group(2) == " open"
    assert first.group(1) in {"predictions", "domain_weights_min_pairs"}
    # skipped suites show their reason; passing rows are listed too
    assert "no LLM annotator in use" in text
    assert sum(1 for r in parsed.rows if r and r[0] == "passed") > 50
    assert "max_swap_inconsistency_rate" in text  # thresholds in effect


def test_passing_run_page_and_escaping(tmp_path: Path, build_db: Path) -> None:
    report = run_quality_checks(build_db)
    assert report.success
    text = write_quality_report(report, tmp_path / "deep" / "er" / "q.html").read_text(encoding="utf-8")
    assert "all gates passed" in text
    assert html.escape(WEIRD) in text and WEIRD not in text  # concept names are escaped, quotes included
    assert not [r for r in _parse(text).rows if r and r[0] == "FAILED"]


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    report = QualityReport(results=[QualityResult(evil, "marts.t", "expect_x", evil, False, evil, evil, error=evil)])
    text = write_quality_report(report, tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert _parse(text).external == []


def test_rewrite_replaces_the_page(tmp_path: Path, build_db: Path) -> None:
    path = tmp_path / "index.html"
    mutate(build_db, "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'")
    write_quality_report(run_quality_checks(build_db, only=["predictions"]), path, build_id="b-old")
    assert "b-old" in path.read_text()
    write_quality_report(QualityReport(), path, build_id="b-new")
    text = path.read_text()
    assert "b-new" in text and "b-old" not in text and "all gates passed" in text
