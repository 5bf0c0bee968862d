"""The HTML page of a quality run: written beside the warehouse, lists every result (the build's dbt tests, the
gates, the publication contract) and the failing ones first, with their observed values."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipelines.build.quality import QualityReport, QualityResult, run_quality_checks, write_quality_report
from pipelines.core.config import Paths
from tests.quality_db import build_fixture_db, dbt_test, mutate


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


def test_failing_run_page_lists_every_kind_of_result_failures_first(build_db: Path) -> None:
    mutate(build_db, "update marts.fct_predictions set prob_a = 1.3 where label_id = 'l1'")  # an invariant
    mutate(build_db, "update marts.fct_concept_effects set n_pairs = 5 where domain = 'code'")  # a gate
    mutate(build_db, "alter table marts.dim_items drop column response_a")  # the publication contract
    report = run_quality_checks(build_db)
    report.build_results = dbt_test(build_db, "fct_predictions")  # as the build's dbt build recorded them
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
    assert len(failed) == len(report.failures()) == 3
    # status, check, run by, column, expected, observed, error
    by_check = {r[1]: r for r in failed}
    prob_a = by_check["expression_is_true"]
    assert prob_a[2] == "dbt test" and prob_a[3] == "prob_a" and "prob_a between 0 and 1" in prob_a[4]
    assert re.fullmatch(r"2 failing rows in audit\.expression_is_true_\w+", prob_a[5])  # l1 in comp and score
    gate = by_check["domain_weights_min_pairs"]
    assert gate[2] == "dbt test" and gate[4] == "min_domain_pairs=20"
    assert gate[5] == "12 failing rows in audit.domain_weights_min_pairs"
    contract = by_check["expect_table_columns_to_match_set"]
    assert contract[2] == "Great Expectations" and contract[5] == 'missing ["response_a"]'
    # every gate and every published relation has a section; failing ones come first and are open
    for name in ("domain_weights_min_pairs", "swap_consistency", "beats_length_only", "dim_items", "fct_builds"):
        assert f'id="suite-{name}"' in text
    sections = re.findall(r'<details id="suite-([^"]+)"( open)?>', text)
    assert {name for name, _ in sections[:3]} == {"fct_predictions", "domain_weights_min_pairs", "dim_items"}
    assert [bool(is_open) for _, is_open in sections] == [True] * 3 + [False] * (len(sections) - 3)
    assert sum(1 for r in parsed.rows if r and r[0] == "passed") > 40
    assert "max_swap_inconsistency_rate" in text  # thresholds in effect


def test_passing_run_page_shows_skipped_gates_with_their_reason(tmp_path: Path, build_db: Path) -> None:
    report = run_quality_checks(build_db, thresholds={"max_parse_failure_rate": None})
    assert report.success
    text = write_quality_report(report, tmp_path / "deep" / "er" / "q.html").read_text(encoding="utf-8")
    assert "all blocking checks passed" in text
    assert not [r for r in _parse(text).rows if r and r[0] == "FAILED"]
    assert "max_parse_failure_rate threshold is None (gate disabled)" in text
    assert "dbt test" in text and "Great Expectations" in text


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    report = QualityReport(results=[QualityResult(evil, "marts.t", "expect_x", evil, False, evil, evil, error=evil)])
    text = write_quality_report(report, tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert _parse(text).external == []


def test_rewrite_replaces_the_page(tmp_path: Path) -> None:
    path = tmp_path / "index.html"
    failing = QualityResult("fct_predictions", "marts.fct_predictions", "not_null", "prob_a", False, engine="dbt")
    write_quality_report(QualityReport(results=[failing]), path, build_id="b-old")
    assert "b-old" in path.read_text() and "not published" in path.read_text()
    write_quality_report(QualityReport(), path, build_id="b-new")
    text = path.read_text()
    assert "b-new" in text and "b-old" not in text and "all blocking checks passed" in text
