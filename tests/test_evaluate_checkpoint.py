"""The evaluation's record in a real build DB: resume, completion, idempotence, fresh starts, abandoned runs."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.warehouse import connect, scalar
from pipelines.evaluate.checkpoint import complete, done_keys, open_evaluation, write_rows
from py_models.eval_protocols import TIE_POLICY


def _rows(mechanism: str, splits: range, variant: str = "hmdr", protocol: str = "in_domain") -> list[dict]:
    return [
        {
            "mechanism": mechanism,
            "mechanism_type": "judge",
            "representation": "measure",
            "variant": variant,
            "protocol": protocol,
            "split": s,
            "held_out_domain": "legal" if protocol == "ood" else None,
            "domain": "legal" if protocol == "ood" else dom,
            "n_pairs": 10,
            "accuracy": 0.5 + s / 100,
            "log_loss": 0.69,
            "n_train": 70,
            "selected_config": "alpha=1",
            "tie_policy": TIE_POLICY,
            "n_ties_dropped": 0,
        }
        for s in splits
        for dom in (["__all__", "general"] if protocol == "in_domain" else ["legal"])
    ]


def test_resume_complete_rerun_and_fresh(tmp_path: Path) -> None:
    con = connect(tmp_path / "preflens.duckdb")
    try:
        first = open_evaluation(con, "b1", '{"n_splits":3}')
        assert first.status == "running" and not first.resumed
        assert write_rows(con, first.eval_id, "b1", _rows("judge:x", range(2)), 3, 1) == 4
        write_rows(con, first.eval_id, "b1", _rows("judge:x", range(1), "shared_only", "ood"), 3, 1)
        assert done_keys(con, first.eval_id) == {
            ("measure", "judge:x", "in_domain", 0, None, "hmdr"),
            ("measure", "judge:x", "in_domain", 1, None, "hmdr"),
            ("measure", "judge:x", "ood", 0, "legal", "shared_only"),
        }
        # a killed run is continued: same evaluation, nothing in eval_results yet
        again = open_evaluation(con, "b1", '{"n_splits":3}')
        assert (again.eval_id, again.status, again.resumed) == (first.eval_id, "running", True)
        assert scalar(con, "select count(*) from ops.eval_results") == 0
        # other settings of the same build: another evaluation
        other = open_evaluation(con, "b1", '{"n_splits":5}')
        assert other.eval_id != first.eval_id and not other.resumed

        write_rows(con, first.eval_id, "b1", _rows("judge:x", range(2, 3)), 3, 1)
        assert complete(con, first.eval_id, n_units=4) == 7
        assert scalar(con, "select count(*) from ops.eval_pending where eval_id = ?", [first.eval_id]) == 0
        assert scalar(con, "select count(distinct created_at) from ops.eval_results") == 1
        assert scalar(con, "select n_splits from ops.eval_results limit 1") == 3
        # a finished evaluation is found again, and completing it again changes nothing
        done = open_evaluation(con, "b1", '{"n_splits":3}')
        assert (done.eval_id, done.status, done.resumed) == (first.eval_id, "complete", True)
        assert complete(con, first.eval_id, n_units=4) == 7
        assert scalar(con, "select count(*) from ops.eval_results") == 7
        # --fresh: a new one, even though a complete one exists
        fresh = open_evaluation(con, "b1", '{"n_splits":3}', fresh=True)
        assert fresh.eval_id != first.eval_id and fresh.status == "running" and not fresh.resumed
        write_rows(con, fresh.eval_id, "b1", _rows("judge:x", range(1)), 3, 1)
        # a new build: running evaluations of the old one can never resume; they are abandoned, rows dropped
        newer = open_evaluation(con, "b2", '{"n_splits":3}')
        assert newer.eval_id not in (first.eval_id, fresh.eval_id)
        status = dict(con.execute("select eval_id, status from ops.eval_runs").fetchall())
        assert status[fresh.eval_id] == "abandoned" and status[other.eval_id] == "abandoned"
        assert status[first.eval_id] == "complete" and status[newer.eval_id] == "running"
        assert scalar(con, "select count(*) from ops.eval_pending") == 0
    finally:
        con.close()
