"""What the help, the dbt docs and the docs say about the checks matches what runs them (issue 11): row and column
invariants are dbt tests (failing rows in schema audit), the gates are dbt singular tests tagged `gate`, and Great
Expectations owns only the publication contract (and the data-docs-like page). Nothing says that Great Expectations
checks the rules, or counts every check as an expectation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, preflens

#: claims that were true when Great Expectations ran every check, and are not now
STALE = [
    re.compile(r"Great Expectations results", re.I),
    re.compile(r"Run the Great Expectations suites", re.I),
    re.compile(r"expectations passed", re.I),
    re.compile(r"results per build and expectation", re.I),
    re.compile(r"one row per expectation", re.I),
    re.compile(r"build × expectation", re.I),
]

#: where prose about the checks lives: the dbt project, the package, the docs
PROSE = [
    *sorted((REPO / "dbt_project" / "models").rglob("*.yml")),
    *sorted((REPO / "dbt_project" / "models").rglob("*.sql")),
    *sorted((REPO / "dbt_project" / "data-tests").rglob("*.sql")),
    *sorted((REPO / "pipelines").rglob("*.py")),
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "README.md",
]


def test_no_text_says_great_expectations_runs_every_check() -> None:
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in PROSE
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(p.search(line) for p in STALE)
    ]
    assert not found, "\n".join(found)


def _description(yml: Path, section: str, name: str) -> str:
    doc = yaml.safe_load(yml.read_text(encoding="utf-8"))
    if section == "sources":
        (table,) = [t for s in doc["sources"] for t in s["tables"] if t["name"] == name]
        return str(table["description"])
    (model,) = [m for m in doc["models"] if m["name"] == name]
    return str(model["description"])


@pytest.mark.parametrize(
    ("yml", "section", "name"),
    [
        ("models/marts/lineage/_lineage__models.yml", "models", "fct_quality_results"),
        ("models/staging/ops/_ops__sources.yml", "sources", "quality_results"),
        ("models/staging/ops/_ops__models.yml", "models", "stg_ops__quality_results"),
    ],
)
def test_the_quality_results_are_described_as_every_check_with_its_owner(yml: str, section: str, name: str) -> None:
    text = _description(REPO / "dbt_project" / yml, section, name)
    assert "dbt" in text and "gate" in text and "publication contract" in text, text


def test_check_help_names_what_it_runs(tmp_path: Path) -> None:
    proc = preflens(tmp_path / "warehouse", "check", "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "quality gates" in text and "publication contract" in text, text
    assert "Great Expectations suites" not in text


@pytest.mark.slow
def test_check_reports_its_checks_not_expectations(quality_db: Path) -> None:
    """`preflens check` on the consistent fixture (real dbt gates, real contract): its verdict counts checks."""
    proc = preflens(quality_db.parent, "check", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^quality gates and publication contract: all \d+ checks passed; report: ", proc.stdout, re.M)
    assert "expectations" not in proc.stdout, proc.stdout
