"""Project paths and settings, resolved from the environment with repo-relative defaults."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    """Every file location the pipeline touches. All absolute."""

    warehouse: Path

    @property
    def build_db(self) -> Path:
        """The DuckDB file the pipeline writes (never opened by BI)."""
        return self.warehouse / "preflens.duckdb"

    @property
    def serve_dir(self) -> Path:
        return self.warehouse / "serve"

    @property
    def serve_db(self) -> Path:
        """The read-only copy published for SQL/BI readers."""
        return self.serve_dir / "preflens.duckdb"

    @property
    def exports_dir(self) -> Path:
        """Parquet exports of the marts, beside the served copy."""
        return self.serve_dir / "parquet"

    @property
    def dbt_target_dir(self) -> Path:
        return self.warehouse / "dbt_target"

    @property
    def quality_dir(self) -> Path:
        """The HTML page of the last quality run (``index.html``), beside the build file."""
        return self.warehouse / "quality"

    @property
    def quality_report(self) -> Path:
        return self.quality_dir / "index.html"

    @property
    def lock_file(self) -> Path:
        return self.warehouse / ".build.lock"


#: the one rule for where the warehouse is, as every command's ``--warehouse`` help states it
DEFAULT_WAREHOUSE_HELP = "warehouse folder (default: $PREFLENS_WAREHOUSE, else ./warehouse in the current directory)"


def default_paths() -> Paths:
    """Paths from ``PREFLENS_WAREHOUSE``, else ``./warehouse`` in the current directory (never the install
    folder: a preflens run from anywhere writes where it is run)."""
    wh = Path(os.environ.get("PREFLENS_WAREHOUSE") or Path.cwd() / "warehouse").resolve()
    return Paths(warehouse=wh)


DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


@functools.lru_cache(maxsize=1)
def dbt_project_vars() -> dict[str, object]:
    """The ``vars:`` of ``dbt_project/dbt_project.yml``: the one owner of the fit settings and of the thresholds
    that both dbt tests and the quality gates use (``min_domain_pairs``, ``top_k``, ``max_abs_lift_pct``)."""
    import yaml

    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return dict(project.get("vars") or {})


SAMPLE_PATH = REPO_ROOT / "warehouse" / "sample" / "pairs_sample.jsonl.gz"
