"""`preflens report`: one self-contained HTML file of the explanations, from the served copy.

* ``data``    read-only queries on ``warehouse/serve/preflens.duckdb`` (schema marts) -> pandas frames
* ``figures`` matplotlib figures (Agg), returned as base64 PNG
* ``render``  HTML assembly (escaped text, inline CSS and images, no network at view time)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from pipelines.serve.report.data import ReportDataError, load_report_data

__all__ = ["ReportDataError", "build_report", "report_path"]


def report_path(reports_dir: Path, build_id: object, representation: str) -> Path:
    """``<reports_dir>/preflens_report_<build>_<rep>.html`` with a file-name-safe build id."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(build_id or "latest")).strip("_")[:60] or "latest"
    return Path(reports_dir) / f"preflens_report_{safe}_{representation}.html"


def build_report(
    serve_db: Path,
    reports_dir: Path,
    *,
    representation: str | None = None,
    max_domains: int = 5,
    top_k: int = 8,
    contrast_domains: int = 3,
    contrast_pairs: int = 6,
    drift_top: int = 4,
    output: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Render the report from the served copy and write it atomically; returns the file path."""
    from pipelines.serve.report.render import render_report

    data = load_report_data(Path(serve_db), representation=representation)
    text = render_report(
        data,
        max_domains=max_domains,
        top_k=top_k,
        contrast_domains_n=contrast_domains,
        contrast_pairs_n=contrast_pairs,
        drift_top=drift_top,
        progress=progress,
    )
    out = (
        Path(output)
        if output
        else report_path(reports_dir, data.build.get("build_id", data.fit_id), data.representation)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
