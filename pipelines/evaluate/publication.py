"""Publish the evaluation marts with the build they evaluate, through the one publish path (``check_and_publish``).

`preflens evaluate` rebuilds only the evaluation marts (``fct_eval_results``, ``rpt_model_comparison``, and what
depends on them; their dbt tests run in that build). Every other mart in the build DB is what the evaluated build
published, provided that build is still the latest one: then the served copy is re-published through
:func:`~pipelines.build.publish.check_and_publish`, whose checks run again (with the default thresholds) and must
pass, as for a build. When a later build failed or was interrupted, the build DB holds marts that were never
validated, so nothing is published and the message says what to run; the same when the checks fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.core.config import Paths
from pipelines.core.lock import connect_build_db

__all__ = ["Publication", "publish_evaluation"]


@dataclass(frozen=True)
class Publication:
    published: bool
    message: str  # one line: where it was published, or why not and what to run


def _latest_build(paths: Paths) -> tuple[str, str, bool] | None:
    con = connect_build_db(paths.build_db, read_only=True)  # under the caller's build lock
    try:
        row = con.execute(
            "select build_id, status, coalesce(published, false) from ops.builds order by started_at desc limit 1"
        ).fetchone()
    finally:
        con.close()
    return None if row is None else (str(row[0]), str(row[1]), bool(row[2]))


def publish_evaluation(paths: Paths, build_id: str | None) -> Publication:
    """Re-publish the served copy with the evaluation marts when ``build_id`` is the latest, published build."""
    from pipelines.build.publish import check_and_publish

    latest = _latest_build(paths)
    if build_id is None or latest is None:
        return Publication(False, "not published: no build was published yet; run `preflens build` to publish")
    latest_id, status, published = latest
    if latest_id != build_id or status != "success" or not published:
        return Publication(
            False,
            f"not published: the latest build {latest_id} is {status}"
            + ("" if published else " and unpublished")
            + f", not the evaluated build {build_id}; run `preflens build`, then `preflens evaluate` again",
        )
    report, result = check_and_publish(paths.build_db, paths.serve_db, paths.exports_dir)
    if result is None:
        failed = report.format_failures().strip().splitlines()
        return Publication(
            False,
            f"not published: {len(failed)} quality check line(s) failed ({failed[0] if failed else 'see preflens check'}); "
            "the results are in the build DB; run `preflens check` to see why, `preflens build` to publish",
        )
    return Publication(True, f"published to {result.serve_db} (build {build_id}, with the evaluation marts)")
