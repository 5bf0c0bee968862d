"""The whole job on the full shared data set (15,928 real pairs), skipped when ../shared is absent.

The fit is the default one (model selection, every representation, the length-controlled refit) without what no
test here reads: the bootstrap intervals and the mechanism contrasts (the sample run builds both with the defaults).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import CHEAP_BUILD, SHARED_DATA, preflens

pytestmark = [pytest.mark.slow, pytest.mark.fulldata]

PAIRS = SHARED_DATA / "pairs.jsonl.gz"
TIES = SHARED_DATA / "pairs_ties.jsonl.gz"
#: no bootstrap resamples (the accuracies come from the point fits' out-of-fold predictions), no contrasts
FULL_DATA_ARGS = (
    "--n-bootstrap",
    "0",
    "--var",
    f"contrast_min_shared_items={CHEAP_BUILD['contrast_min_shared_items']}",
)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not PAIRS.exists():
        pytest.skip("../shared/data is not available")
    wh = tmp_path_factory.mktemp("full")
    proc = preflens(wh, "run", str(PAIRS), str(TIES), *FULL_DATA_ARGS, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return wh


def test_every_row_is_accounted_for(full_run: Path) -> None:
    con = duckdb.connect(str(full_run / "preflens.duckdb"), read_only=True)
    try:
        read, loaded, dup, quar = con.execute(
            "select sum(rows_read), sum(rows_loaded), sum(rows_duplicate), sum(rows_quarantined) from raw.ingest_runs"
        ).fetchone()
        n_labels = con.execute("select count(*) from raw.labels").fetchone()[0]
        ties = con.execute("select count(*) from raw.labels where winner = 'tie'").fetchone()[0]
        reasons = dict(con.execute("select reason, count(*) from raw.quarantine group by reason").fetchall())
    finally:
        con.close()
    assert read == 15_928 + 899
    assert loaded + dup + quar == read and loaded == n_labels
    assert ties > 0
    # the only rows not loaded are the same judge giving opposite verdicts under two protocols
    assert set(reasons) <= {"conflicting label"}


def test_ties_are_kept_but_not_fitted(full_run: Path) -> None:
    con = duckdb.connect(str(full_run / "serve" / "preflens.duckdb"), read_only=True)
    try:
        tie_preds = con.execute("select count(*) from marts.fct_predictions where actual_winner = 'tie'").fetchone()[0]
        n_ties = con.execute("select sum(n_ties) from marts.dim_mechanisms").fetchone()[0]
    finally:
        con.close()
    assert tie_preds == 0 and n_ties > 0


def test_explanations_beat_chance_for_judges_and_reward_models(full_run: Path) -> None:
    con = duckdb.connect(str(full_run / "serve" / "preflens.duckdb"), read_only=True)
    try:
        rows = con.execute(
            """select mechanism_type, sum(accuracy * n_pairs) / sum(n_pairs), sum(n_pairs)
               from marts.fct_model_metrics where domain = '__all__' and representation = 'comp'
               group by mechanism_type"""
        ).fetchall()
    finally:
        con.close()
    acc = {t: (a, n) for t, a, n in rows}
    assert set(acc) == {"human", "judge", "reward"}
    # several thousand out-of-fold pairs each: 0.55 is far outside chance noise (sd ~ 0.01)
    assert acc["judge"][0] > 0.6
    assert acc["reward"][0] > 0.55
    assert acc["human"][0] > 0.55
