"""A self-contained HTML page of one quality run (the equivalent of GE data docs, without a ``gx/`` folder).

GE's data docs need a file-backed data context, and they would not show the dbt tests; so the page is rendered
here from the :class:`~pipelines.build.quality.results.QualityReport`, every result alike: the data tests of the
build's ``dbt build`` (invariants), the gates (dbt singular tests) and the publication contract (Great
Expectations). A header with the verdict, then one section per suite (a model, a gate; failing suites first and
open) listing every check with what ran it, its status, expected and observed values (for a dbt test: its failing
rows and the ``audit`` table that holds them), plus the thresholds in effect. No scripts, no external assets: the
file can be mailed, archived or served as is. It is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.build.quality.results import DBT, QualityReport, QualityResult

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:0;display:inline}
.meta{color:#59636e;margin-bottom:1rem}.verdict{font-weight:600;padding:.15rem .5rem;border-radius:4px}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}.skip{background:#eef1f4;color:#59636e}
details{border:1px solid #d1d9e0;border-radius:6px;margin:.6rem 0;padding:.4rem .8rem}
summary{cursor:pointer}table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border-bottom:1px solid #e5e9ee;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.status{white-space:nowrap}code{font-size:12px;word-break:break-word}
tr.failed td{background:#fff5f5}.counts{color:#59636e;margin-left:.5rem}
"""


def _status(r: QualityResult) -> tuple[str, str]:
    if r.skipped:
        return "skipped", "skip"
    return ("passed", "pass") if r.success else ("FAILED", "fail")


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _suites(report: QualityReport) -> dict[str, list[QualityResult]]:
    out: dict[str, list[QualityResult]] = {}
    for r in report.all_results:
        out.setdefault(r.suite, []).append(r)
    return out


def _engine(r: QualityResult) -> str:
    return "dbt test" if r.engine == DBT else "Great Expectations"


def _row(r: QualityResult) -> str:
    label, cls = _status(r)
    observed = r.observed or ""
    if r.unexpected_count is not None and r.unexpected_count > 0 and str(r.unexpected_count) not in observed:
        observed = f"{r.unexpected_count} unexpected; {observed}" if observed else f"{r.unexpected_count} unexpected"
    return (
        f'<tr class="{"failed" if cls == "fail" else "ok"}">'
        f'<td class="status"><span class="verdict {cls}">{label}</span></td>'
        f"<td><code>{_esc(r.expectation_type)}</code></td>"
        f"<td>{_esc(_engine(r))}</td>"
        f"<td>{_esc(r.column)}</td>"
        f"<td><code>{_esc(r.expected)}</code></td>"
        f"<td><code>{_esc(observed)}</code></td>"
        f"<td>{_esc(r.error)}</td></tr>"
    )


def render_quality_report(
    report: QualityReport,
    *,
    build_id: str | None = None,
    title: str = "preflens quality checks",
    generated_at: dt.datetime | None = None,
    thresholds: Mapping[str, Any] | None = None,
) -> str:
    """The HTML text of the page for ``report`` (see module docstring)."""
    when = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    suites = _suites(report)
    everything = report.all_results
    n_checked = sum(not r.skipped for r in everything)
    n_failed = len(report.failures())
    n_warned = len(report.warnings())
    verdict = (
        '<span class="verdict pass">all blocking checks passed: publishable</span>'
        if report.success
        else f'<span class="verdict fail">{n_failed} of {n_checked} checks failed: not published</span>'
    ) + (f' <span class="verdict skip">{n_warned} recorded warnings</span>' if n_warned else "")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}{' - ' + _esc(build_id) if build_id else ''}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<div class="meta">build <code>{_esc(build_id or "-")}</code> &middot; generated {_esc(when)} &middot; '
        f"{len(suites)} suites, {n_checked} checks, {len(report.skipped)} skipped &middot; "
        "failing rows of a dbt test: table <code>audit.&lt;test&gt;</code> of the build file</div>",
        f"<p>{verdict}</p>",
    ]
    # failing suites first (open), then passing/skipped ones in run order (closed)
    order = sorted(suites, key=lambda s: all(r.success for r in suites[s]))
    for name in order:
        rows = suites[name]
        fails = [r for r in rows if not r.success]
        skipped = all(r.skipped for r in rows)
        cls = "skip" if skipped else "pass" if not fails else "fail"
        badge = "skipped" if skipped else "passed" if not fails else f"{len(fails)} failed"
        tables = ", ".join(sorted({r.table for r in rows}))
        reason = report.skip_reasons.get(name)
        parts.append(
            f'<details id="suite-{_esc(name)}"{" open" if fails else ""}><summary>'
            f'<h2>{_esc(name)}</h2> <span class="verdict {cls}">{badge}</span>'
            f'<span class="counts">{_esc(tables)} &middot; {sum(not r.skipped for r in rows)} checks'
            f"{' &middot; ' + _esc(reason) if reason else ''}</span></summary>"
        )
        parts.append(
            "<table><thead><tr><th>status</th><th>check</th><th>run by</th><th>column</th><th>expected</th>"
            "<th>observed</th><th>error</th></tr></thead><tbody>"
        )
        # failures first within a suite too
        parts += [_row(r) for r in sorted(rows, key=lambda r: r.success)]
        parts.append("</tbody></table></details>")
    th = dict(thresholds) if thresholds is not None else (asdict(report.thresholds) if report.thresholds else None)
    if th:
        parts.append("<details><summary><h2>thresholds in effect</h2></summary><table><tbody>")
        parts += [f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in th.items()]
        parts.append("</tbody></table></details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_quality_report(
    report: QualityReport,
    path: Path | str,
    *,
    build_id: str | None = None,
    title: str = "preflens quality checks",
) -> Path:
    """Render ``report`` and write it to ``path`` atomically (parent folders created). Returns the path.

    Typical use after the checks: ``write_quality_report(report, paths.quality_report, build_id=build_id)``
    writes ``warehouse/quality/index.html``.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_quality_report(report, build_id=build_id, title=title)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
