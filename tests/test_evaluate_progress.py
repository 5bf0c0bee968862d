"""`preflens evaluate`'s progress: CPU seconds per mechanism and variant, and the run's CPU profile at the end."""

from __future__ import annotations

import time

import pandas as pd

from pipelines.evaluate.progress import EvalProgress
from pipelines.evaluate.workers import run_units
from py_models.eval_protocols import EvalUnit, ProtocolSettings, plan_units, prepare_mechanism
from tests.test_evaluate import make_frame


def _units() -> list[EvalUnit]:
    return [
        EvalUnit("measure", "judge:a", "in_domain", 0, None, ("hmdr",)),
        EvalUnit("measure", "judge:a", "in_domain", 0, None, ("shared_only", "flat_pooled")),
        EvalUnit("comp", "judge:a", "in_domain", 0, None, ("hmdr",)),
    ]


def test_lines_give_wall_and_cpu_seconds_and_the_profile_counts_each_unit_once() -> None:
    lines: list[str] = []
    units = _units()
    tracker = EvalProgress(units, units, lines.append)
    tracker.unit_done(units[0], 4.0, 0, 1.5)
    tracker.unit_done(units[1], 3.0, 0, 2.25)
    tracker.unit_done(units[2], 1.0, 0, 0.5)
    tracker.finish(30)
    hmdr = next(line for line in lines if " measure judge:a hmdr: " in line)
    assert "4.0s of fits (1.5s CPU)" in hmdr, lines
    for v in ("shared_only", "flat_pooled"):  # one unit serves both: each line shows its time
        assert any(f" measure judge:a {v}: " in line and "(2.2s CPU)" in line for line in lines), lines
    profile = [line for line in lines if "CPU seconds of fits" in line]
    # the shared unit is counted once in its representation's total (1.5 + 2.25), costliest group first
    assert profile == [
        "  CPU seconds of fits, comp: 0.5 (hmdr 0.5)",
        "  CPU seconds of fits, measure: 3.8 (shared_only+flat_pooled 2.2, hmdr 1.5)",
    ], lines


def test_workers_report_the_cpu_seconds_of_each_unit() -> None:
    """A unit's CPU seconds are its fits' CPU time: positive, and not more than its wall time allows on one
    thread (workers run one solver thread); a sleeping parent does not count."""
    df, cols = make_frame(seed=2)
    mech = sorted(df.mechanism.unique())[0]
    design = prepare_mechanism(df[df.mechanism == mech], cols, "comp")
    settings = ProtocolSettings(variants=("shared_only",), n_splits=1, n_seeds=1, min_ood_test=45)
    units = plan_units(design, settings)[:2]
    t0 = time.perf_counter()
    results = list(run_units({("comp", mech): design}, units, settings, n_jobs=2))
    wall = time.perf_counter() - t0
    assert len(results) == len(units)
    for unit, rows, secs, n_conv, cpu in results:
        assert unit in units and rows and n_conv >= 0
        assert 0 < cpu <= secs * 1.05 + 0.01 and secs <= wall
    assert pd.DataFrame([r for _, rows, *_ in results for r in rows]).shape[0] > 0
