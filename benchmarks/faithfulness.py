"""Faithfulness benchmark: do the default explanations predict the mechanisms better than surface baselines?

Runs the real main job (ingest -> offline annotate -> dbt build -> fit, with the project's defaults) on a
preference file -- by default ``../shared/data/pairs.jsonl.gz`` -- in a temporary warehouse, then reads
``marts.fct_model_metrics`` of that build. Every build fits, per mechanism and on the same 5 folds, the concept
model (HMDR) and two reference models (py_models/style_baseline.py), so all figures below come from one run with
one protocol (5-fold out-of-fold accuracy, ties dropped, mechanisms with >= --min-pairs decisive pairs):

  length_only   log word-count ratio, no-intercept L2 logistic regression (C = 1)
  style         the 15-feature style regression (same model)
  default       preflens' default explanation (measure-rep, selected HMDR)
  comp          preflens on the paper's comp-rep (same selection)

The build's concept models choose their hyperparameters by CV on the same folds that score them, so those figures
are optimistic. ``--nested`` (default on) also scores the default model honestly: on each outer fold of the
build, the selection runs on the training part only (inner 5-fold CV), and the outer fold is predicted
(column ``default_nested``). Bootstrap CIs are off (``hmdr_n_bootstrap=0``): they do not change predictions.

Targets (issue 9): default >= style + 2.0 points and >= length_only + 4.0 points, mean over mechanisms.

Usage: python benchmarks/faithfulness.py [PATH ...] [--min-pairs 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.build.run import run_pipeline  # noqa: E402
from pipelines.core.config import Paths, dbt_project_vars  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "pairs.jsonl.gz"
COLUMNS = {
    "length_only": ("comp", "length_only"),
    "style": ("comp", "style"),
    "default": ("measure", "hmdr"),
    "comp": ("comp", "hmdr"),
}


def nested_accuracy(con: duckdb.DuckDBPyConnection, min_pairs: int) -> pd.Series:
    """Per mechanism: out-of-fold accuracy of the default model with its selection nested in each outer fold of
    the build (the same folds, py_models.cv.stratified_folds keyed by label id), measure-rep scaled on the outer
    training part."""
    import numpy as np
    from joblib import Parallel, delayed

    from py_models.cv import score, stratified_folds
    from py_models.features import design_frame
    from py_models.fit_job import rms_scale
    from py_models.selection import HMDRClassifierCV

    df, cols = design_frame(con.sql("select * from intermediate.int_pair_features_measure").df())
    min_domain = int(dbt_project_vars()["min_domain_pairs"])  # type: ignore[call-overload]

    def one(mech: str) -> tuple[str, float]:
        sub = df[df["mechanism"] == mech].sort_values("label_id", kind="stable").reset_index(drop=True)
        X_raw = sub[cols].to_numpy(dtype=float)
        y = sub["winner"].to_numpy(dtype=object)
        dom = sub["domain"].to_numpy(dtype=object)
        folds = stratified_folds(dom, y, 5, 0, order=sub["label_id"].to_numpy())
        prob = np.full(len(sub), 0.5)
        for k in range(5):
            te = folds == k
            tr = ~te
            if not te.any() or len(set(y[tr].tolist())) < 2:
                continue
            X = X_raw / rms_scale(X_raw[tr])
            m = HMDRClassifierCV(min_domain_samples=min_domain).fit(X[tr], y[tr], domains=dom[tr])
            prob[te] = m.predict_proba(X[te], dom[te])[:, 1]
        return mech, score(y == "a", prob)[0]

    counts = df.groupby("mechanism").size()
    mechs = sorted(counts[counts >= min_pairs].index)
    return pd.Series(dict(Parallel(n_jobs=2)(delayed(one)(m) for m in mechs)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_DATA])
    ap.add_argument("--min-pairs", type=int, default=100, help="mechanisms with at least this many decisive pairs")
    ap.add_argument("--keep", type=Path, help="build the warehouse here and keep it (default: a temp folder)")
    ap.add_argument("--no-nested", dest="nested", action="store_false", help="skip the nested-selection score")
    args = ap.parse_args()
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        print(f"faithfulness: input not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    wh = args.keep or Path(tempfile.mkdtemp(prefix="preflens-faith-"))
    try:
        t0 = time.perf_counter()
        result = run_pipeline(Paths(warehouse=wh.resolve()), args.paths, dbt_vars={"hmdr_n_bootstrap": 0})
        seconds = time.perf_counter() - t0
        con = duckdb.connect(str(Paths(warehouse=wh.resolve()).build_db), read_only=True)
        try:
            m = con.execute(
                """select mechanism, representation, variant, n_pairs, accuracy from marts.fct_model_metrics
                   where fit_id = ? and domain = '__all__'""",
                [result.build_id],
            ).df()
            nested = nested_accuracy(con, args.min_pairs) if args.nested else None
        finally:
            con.close()
    finally:
        if args.keep is None:
            shutil.rmtree(wh, ignore_errors=True)
    n = m[(m.variant == "hmdr") & (m.representation == "comp")].set_index("mechanism")["n_pairs"]
    table = pd.DataFrame({"n_pairs": n})
    for name, (rep, variant) in COLUMNS.items():
        sel = m[(m.representation == rep) & (m.variant == variant)].set_index("mechanism")["accuracy"]
        table[name] = 100 * sel
    table = table[table.n_pairs >= args.min_pairs].sort_index()
    if nested is not None:
        table["default_nested"] = 100 * nested.reindex(table.index)
    pd.set_option("display.width", 160)
    print(f"build {result.build_id} in {seconds:.0f}s; {len(table)} mechanisms with >= {args.min_pairs} decisive pairs")
    print(table.round(1).to_string())
    mean = table.drop(columns="n_pairs").mean()
    print("\nmean accuracy (%): " + ", ".join(f"{k} {v:.1f}" for k, v in mean.items()))
    gain_style, gain_len = mean["default"] - mean["style"], mean["default"] - mean["length_only"]
    print(f"default - style = {gain_style:+.1f} points (target >= +2.0: {'met' if gain_style >= 2 else 'MISSED'})")
    print(f"default - length_only = {gain_len:+.1f} points (target >= +4.0: {'met' if gain_len >= 4 else 'MISSED'})")
    print(f"default - comp = {mean['default'] - mean['comp']:+.1f} points")
    if "default_nested" in mean:
        g = mean["default_nested"] - mean["style"]
        print(
            f"default_nested - style = {g:+.1f} points (selection nested; target >= +2.0: {'met' if g >= 2 else 'MISSED'})"
        )
        g = mean["default_nested"] - mean["length_only"]
        print(f"default_nested - length_only = {g:+.1f} points (target >= +4.0: {'met' if g >= 4 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
