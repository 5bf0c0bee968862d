"""HMDR speed and memory benchmark against named baselines, measured in the same run (never asserted in tests).

Data: py_models.synthetic.make_planted -- n pairs x 600 concepts (75 shared, the rest specific to 1-3 of 8
domains), comp-rep-like {-1, 0, 1}, ~15% non-zero. Hyperparameters: alpha = 1/8, the paper's grid at |D| = 8.

Measured, each task in its own subprocess after a warm-up run of the same task on 400 pairs (imports, numba's
compiled-kernel cache), as wall time and memory: the peak resident set of that process during the task minus its
resident set once the data were generated, from /proc, so the data themselves are not counted:
  ours_fit      HMDRClassifier (solver "cd": coordinate descent on X itself, py_models/_cd.py) at lambda_b = 1/32,
                lambda_s = 1/64, certified by a duality gap
  lib_fit       the same with solver "liblinear" (the previous route: augmented design + liblinear)
  ours_select   HMDRClassifierCV, 9 configs x 5 folds (warm-started paths, folds in threads) + refit ("cd")
  lib_select    the same with solver "liblinear"
  sk_aug_fit    (b) scikit-learn LogisticRegression(penalty='l1', solver='liblinear', default settings) on the
                literal §4.5 augmented design (rows symmetrised, alpha rows, b-block rescaled), built per fit
  sk_aug_select (b) the same for the full selection (design rebuilt per fold, no warm starts)
  per_domain    (c) independent per-domain scikit-learn L1 fits (the peers' way), C = 1/(lambda_s n_d)
  adam          (a) the paper's approach: full-batch Adam on Eq. 1 in numpy, run until its objective is within
                1e-4 relative of ours (or a time cap; then the ratio is a lower bound); --adam-cap 0 skips it
The baselines run up to --baseline-max-n pairs; "ours" at every size (the 1M row: time and peak MB per million
pairs). With --sample, the fit stage of `preflens run` on the bundled sample (dbt build --selector fit: every
representation, model selection, the length-controlled refit, 200 bootstrap resamples, fit_jobs 2) is timed
with each solver on copies of one build DB (dbt's parse warm, as when `preflens run` reaches the stage;
--sample-cold-parse: cold), split into dbt's start-up, int_hmdr_fits and the marts and tests after it, and the objectives of both solvers are compared per mechanism and
representation at each mechanism's selected configuration. The machine's load average is printed with every row.

Usage: python benchmarks/hmdr_bench.py [--sizes 10000,100000,1000000] [--adam-cap 300] [--sample]
                                       [--sample-warehouse DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPHA, LAM_B, LAM_S = 1 / 8, 1 / 32, 1 / 64


# ---------------------------------------------------------------------------------------------- memory, load
def _status_mb(key: str) -> float | None:
    """A field of /proc/self/status in MB (VmRSS: now, VmHWM: peak), None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the peak resident set (VmHWM) to the current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Give freed heap memory back to the OS (glibc), so the resident set is what is in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_mb() -> float:
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------------------------- tasks
def _data(n: int):
    from py_models.synthetic import make_planted

    return make_planted(n, seed=0)


def _ours_obj(D, b, S):
    from py_models._augment import hmdr_objective

    y_pm = np.where(D.y == "a", 1.0, -1.0)
    idx = np.searchsorted(D.domain_names, D.domains)
    return hmdr_objective(D.X, y_pm, idx, b, S, ALPHA, LAM_B, LAM_S)


def _fit(D, solver: str):
    from py_models.hmdr import HMDRClassifier

    t = time.perf_counter()
    m = HMDRClassifier(
        alpha=ALPHA,
        lambda_shared=LAM_B,
        lambda_domain=LAM_S,
        shared_mask=D.shared_mask,
        domain_masks=D.domain_masks,
        min_domain_samples=1,
        solver=solver,
    ).fit(D.X, D.y, domains=D.domains)
    sec = time.perf_counter() - t
    return {
        "seconds": sec,
        "objective": m.objective_,
        "duality_gap": m.duality_gap_,
        "kkt_violation": m.kkt_violation_,
        "nnz": int(np.count_nonzero(m.coef_shared_) + np.count_nonzero(m.coef_domain_)),
    }


def task_ours_fit(D, args):
    return _fit(D, "cd")


def task_lib_fit(D, args):
    return _fit(D, "liblinear")


def _select(D, solver: str):
    from py_models.selection import HMDRClassifierCV

    t = time.perf_counter()
    m = HMDRClassifierCV(
        grid="paper",
        rule="max_fold_accuracy",
        max_abs_weight=np.inf,
        alpha=ALPHA,
        shared_mask=D.shared_mask,
        domain_masks=D.domain_masks,
        min_domain_samples=1,
        grid_domains=8,
        solver=solver,
    ).fit(D.X, D.y, domains=D.domains)
    return {"seconds": time.perf_counter() - t, "objective": m.objective_, "selected": m.selected_config_}


def task_ours_select(D, args):
    return _select(D, "cd")


def task_lib_select(D, args):
    return _select(D, "liblinear")


def _literal_design(D, lam_b, lam_s, rows=None):
    """§4.5 recipe, literally: symmetrise rows, alpha rows, scale the b-block by lam_s/lam_b."""
    import scipy.sparse as sp

    from py_models._augment import AugmentedDesign

    X, y, dom = D.X, np.where(D.y == "a", 1.0, -1.0), np.searchsorted(D.domain_names, D.domains)
    if rows is not None:
        X, y, dom = X[rows], y[rows], dom[rows]
    Xs = sp.vstack([X, -X], format="csr")
    ys, ds = np.concatenate([y, -y]), np.concatenate([dom, dom])
    des = AugmentedDesign(
        Xs, ys, ds, np.flatnonzero(D.shared_mask), [np.flatnonzero(D.domain_masks[d]) for d in D.domain_names], ALPHA
    )
    r, ya, wa = des.rows(np.ones(len(ys)))
    lam = des.penalties(lam_b, lam_s)
    A = des.A[r] @ sp.diags(lam_s / lam)
    return des, A, ya, wa, lam_s / lam, len(ys)


def _sk_fit(D, lam_b, lam_s, rows=None):
    import warnings

    from sklearn.linear_model import LogisticRegression

    des, A, ya, wa, scale, N = _literal_design(D, lam_b, lam_s, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(penalty="l1", solver="liblinear", C=1.0 / (lam_s * N), fit_intercept=False)
        lr.fit(A, ya, sample_weight=wa)
    theta = lr.coef_.ravel() * (1 if lr.classes_[1] == 1 else -1)
    b, S = des.unpack(theta * scale, len(D.domain_names), np.arange(len(D.domain_names)))
    return b, S


def task_sk_aug_fit(D, args):
    t = time.perf_counter()
    b, S = _sk_fit(D, LAM_B, LAM_S)
    sec = time.perf_counter() - t
    return {"seconds": sec, "objective": _ours_obj(D, b, S)}


def task_sk_aug_select(D, args):
    from py_models._augment import rowwise_dot, sigmoid
    from py_models.cv import score, stratified_folds
    from py_models.selection import paper_grid

    t = time.perf_counter()
    folds = stratified_folds(D.domains, D.y, 5, 0)
    idx = np.searchsorted(D.domain_names, D.domains)
    ypos = D.y == "a"
    res = []
    for c, g in enumerate(paper_grid(8)):
        accs = []
        for k in range(5):
            tr = np.flatnonzero(folds != k)
            te = folds == k
            b, S = _sk_fit(D, g["lambda_shared"], g["lambda_domain"], rows=tr)
            z = D.X[te] @ b + rowwise_dot(D.X[te], S, idx[te])
            accs.append(score(ypos[te], sigmoid(z))[0])
        res.append((np.mean(accs), c))
    best = paper_grid(8)[max(res)[1]]
    _sk_fit(D, best["lambda_shared"], best["lambda_domain"])
    return {"seconds": time.perf_counter() - t}


def task_adam(D, args):
    """Full-batch Adam on Eq. 1 (numpy), b and s_d masked, until within 1e-4 relative of ``args.target``."""
    X = D.X.tocsr()
    XT = X.T.tocsr()
    y = np.where(D.y == "a", 1.0, -1.0)
    dom = np.searchsorted(D.domain_names, D.domains)
    K, p, n = len(D.domain_names), X.shape[1], X.shape[0]
    rows = [np.flatnonzero(dom == k) for k in range(K)]
    Xd = [X[r] for r in rows]
    XdT = [x.T.tocsr() for x in Xd]
    mb = D.shared_mask.astype(float)
    mS = np.vstack([D.domain_masks[d] for d in D.domain_names]).astype(float)
    b, S = np.zeros(p), np.zeros((K, p))
    mo = [np.zeros(p), np.zeros((K, p))]
    ve = [np.zeros(p), np.zeros((K, p))]
    lr, b1, b2, eps = args.adam_lr, 0.9, 0.999, 1e-8
    target = args.target * (1 + 1e-4)
    t0 = time.perf_counter()
    it, best = 0, np.inf
    while True:
        it += 1
        zs = X @ b
        zf = zs.copy()
        for k in range(K):
            zf[rows[k]] += Xd[k] @ S[k]
        F = (np.logaddexp(0, -y * zf).sum() + ALPHA * np.logaddexp(0, -y * zs).sum()) / n
        F += LAM_B * np.abs(b).sum() + LAM_S * np.abs(S).sum()
        best = min(best, F)
        el = time.perf_counter() - t0
        if F <= target or el > args.adam_cap:
            break
        gf = -y / (1 + np.exp(y * zf)) / n
        gs = -ALPHA * y / (1 + np.exp(y * zs)) / n
        gb = (XT @ (gf + gs) + LAM_B * np.sign(b)) * mb
        gS = np.vstack([XdT[k] @ gf[rows[k]] for k in range(K)]) + LAM_S * np.sign(S)
        gS *= mS
        step = lr / np.sqrt(1.0 + it / 200.0)
        for i, (par, g) in enumerate(((b, gb), (S, gS))):
            mo[i] = b1 * mo[i] + (1 - b1) * g
            ve[i] = b2 * ve[i] + (1 - b2) * g * g
            par -= step * (mo[i] / (1 - b1**it)) / (np.sqrt(ve[i] / (1 - b2**it)) + eps)
    return {
        "seconds": time.perf_counter() - t0,
        "objective": best,
        "iterations": it,
        "reached": bool(best <= target),
        "rel_gap": (best - args.target) / args.target,
    }


def task_per_domain(D, args):
    from sklearn.linear_model import LogisticRegression

    t = time.perf_counter()
    for d in D.domain_names:
        m = D.domains == d
        cols = np.flatnonzero(D.domain_masks[d])
        LogisticRegression(
            l1_ratio=1.0, C=1.0 / (LAM_S * m.sum()), solver="liblinear", fit_intercept=False, tol=1e-6
        ).fit(D.X[m][:, cols], D.y[m])
    return {"seconds": time.perf_counter() - t}


TASKS = {k[5:]: v for k, v in globals().items() if k.startswith("task_")}


def child(args) -> None:
    if args.task != "adam":  # warm-up on 400 pairs: imports and numba's compiled-kernel cache are not the fit's cost
        TASKS[args.task](_data(400), args)
    D = _data(args.n)
    gc.collect()
    _trim()
    base = _status_mb("VmRSS")
    exact = _reset_peak() and base is not None
    if not exact:
        base = _peak_mb()
    out = TASKS[args.task](D, args)
    out["fit_peak_mb"] = _peak_mb() - float(base or 0.0)
    out["peak_measured"] = "VmHWM after reset" if exact else "ru_maxrss (upper bound of the data generation)"
    print("RESULT " + json.dumps(out, default=float))


def run(task: str, n: int, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", task, "--n", str(n), *(extra or [])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    out = json.loads(line[7:])
    out["load"] = _load()
    return out


def _ratio(num: dict, den: dict) -> float:
    a, b = num.get("seconds"), den.get("seconds")
    return float(a) / float(b) if a and b else float("nan")


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# ---------------------------------------------------------------------------------------------- the sample
def _build_sample(warehouse: Path) -> None:
    """`preflens run` on the bundled sample into ``warehouse`` (no bootstrap, no selection: only its tables)."""
    cmd = [
        str(Path(sys.executable).with_name("preflens")),
        "run",
        "--warehouse",
        str(warehouse),
        "--var",
        "hmdr_n_bootstrap=0",
        "--var",
        "hmdr_select=false",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(
            f"building the sample warehouse failed ({p.returncode}): {p.stderr[-2000:] or p.stdout[-2000:]}"
        )


def _annotator_vars(db: Path) -> dict[str, str]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "select annotator, annotator_version from ops.builds where status = 'success' order by started_at desc"
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise SystemExit(f"{db}: no successful build in ops.builds")
    return {"annotator": str(row[0]), "annotator_version": str(row[1])}


def _node_times(target: Path) -> dict[str, tuple[float, float]]:
    """Each node's (start, end) of its execute phase, as epoch seconds, from dbt's run_results.json."""
    from datetime import datetime

    def epoch(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    out: dict[str, tuple[float, float]] = {}
    for r in json.loads((target / "run_results.json").read_text())["results"]:
        phases = {t["name"]: t for t in r.get("timing", [])}
        t = phases.get("execute") or phases.get("compile")
        if t and t.get("started_at") and t.get("completed_at"):
            parts = r["unique_id"].split(".")
            out[parts[-2] if parts[0] == "test" else parts[-1]] = (epoch(t["started_at"]), epoch(t["completed_at"]))
    return out


def _fit_stage(warehouse: Path, solver: str, extra: dict[str, str], cold_parse: bool = False) -> dict[str, Any]:
    """The fit stage of `preflens run` (dbt build --selector fit, default settings) on a copy of the build DB.

    As in `preflens run`, where the fit stage follows the prefit stage in the same dbt target directory with the
    same vars, dbt's parse is warm: `dbt parse` with the same vars runs first, untimed (``cold_parse``: not,
    so the stage also pays a full parse of the project). The stage is split by dbt's run_results.json into
    dbt's start-up (until int_hmdr_fits starts), int_hmdr_fits itself and everything after it (the marts,
    the history stores, the reports and every test)."""
    from pipelines.build.dbt_runner import run_dbt
    from pipelines.core.config import Paths

    src = Paths(warehouse=warehouse).build_db
    vars_ = {**_annotator_vars(src), **extra, "hmdr_solver": solver}
    with tempfile.TemporaryDirectory(prefix="hmdr_bench_") as tmp:
        paths = Paths(warehouse=Path(tmp))
        shutil.copy2(src, paths.build_db)
        inline = "{" + ", ".join(f"{k}: '{v}'" for k, v in vars_.items()) + "}"
        if not cold_parse:
            run_dbt(["parse", "--vars", inline], paths, f"bench-{solver}")
        started = time.time()
        t = time.perf_counter()
        run_dbt(["build", "--selector", "fit", "--vars", inline], paths, f"bench-{solver}")
        sec = time.perf_counter() - t
        nodes = _node_times(paths.dbt_target_dir)
    fit = nodes.get("int_hmdr_fits", (float("nan"), float("nan")))
    return {
        "seconds": sec,
        "start_up": fit[0] - started,
        "fit_model": fit[1] - fit[0],
        "after": sec - (fit[1] - started),
        "load": _load(),
    }


def _sample_fit_build(warehouse: str, solver: str) -> dict[str, Any]:
    """The body of int_hmdr_fits (fit_build on the build DB's tables, default settings but fit_jobs 1) in this
    process, one BLAS thread as in the fit's worker processes: the solver's share of the fit stage without dbt,
    worker start-up or the marts."""
    import duckdb

    from pipelines.build.fit_runner import fit_settings
    from pipelines.core.config import Paths
    from py_models.fit_build import fit_build
    from py_models.representations import representation_settings

    con = duckdb.connect(str(Paths(warehouse=Path(warehouse)).build_db), read_only=True)
    try:
        settings = fit_settings("bench", {"hmdr_solver": solver, "fit_jobs": 1})
        feats = {
            r: con.execute(f'select * from intermediate."{representation_settings(r).feature_table}"').df()
            for r in settings.representations
        }
        texts = con.execute('select * from intermediate."int_item_texts"').df()
    finally:
        con.close()
    t, c = time.perf_counter(), time.process_time()
    fit_build(feats, texts, settings)
    return {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c}


def _sample_objectives(warehouse: Path) -> dict[str, Any]:
    """Per representation and mechanism of the sample: both solvers' objectives at the liblinear route's selected
    configuration (same data as the fit: decisive pairs in label_id order, measure-rep standardised)."""
    import duckdb

    from pipelines.core.config import Paths
    from py_models.features import design_frame
    from py_models.fit_job import rms_scale
    from py_models.hmdr import HMDRClassifier
    from py_models.representations import representation_settings
    from py_models.selection import HMDRClassifierCV

    con = duckdb.connect(str(Paths(warehouse=warehouse).build_db), read_only=True)
    worst, n_fits, same_config, rows = 0.0, 0, 0, []
    try:
        for rep in ("measure", "comp", "score"):
            settings = representation_settings(rep)
            wide = con.execute(f'select * from intermediate."{settings.feature_table}"').df()
            frame, cols = design_frame(wide)
            if not cols:
                continue
            for mech, sub in frame.groupby("mechanism", sort=True):
                dec = sub[sub["winner"] != "tie"].sort_values("label_id", kind="stable")
                if len(dec) < 20 or dec["winner"].nunique() < 2:
                    continue
                X = dec[cols].to_numpy(np.float64)
                X = X / rms_scale(X) if settings.standardize else X
                y, dom = dec["winner"].to_numpy(object), dec["domain"].to_numpy(object)
                sel = {
                    s: HMDRClassifierCV(min_domain_samples=20, solver=s).fit(X, y, domains=dom)
                    for s in ("liblinear", "cd")
                }
                cfg = {k: sel["liblinear"].selected_config_[k] for k in ("alpha", "lambda_shared", "lambda_domain")}
                same_config += int(all(np.isclose(sel["cd"].selected_config_[k], v, rtol=1e-9) for k, v in cfg.items()))
                obj = {
                    s: HMDRClassifier(**cfg, min_domain_samples=20, solver=s).fit(X, y, domains=dom).objective_
                    for s in ("liblinear", "cd")
                }
                rel = (obj["cd"] - obj["liblinear"]) / obj["liblinear"]
                rows.append((rep, str(mech), rel))
                worst = max(worst, abs(rel))
                n_fits += 1
    finally:
        con.close()
    return {
        "n_fits": n_fits,
        "max_abs_rel_objective_diff": worst,
        "same_selected_config": same_config,
        "cd_below_liblinear": sum(r < 0 for _, _, r in rows),
    }


def _warm_kernels() -> None:
    """Compile (or load) the solver's kernels for every input kind once, so that the timed fit stages' worker
    processes load them from numba's cache instead of compiling them (a one-off after each install or change)."""
    from py_models.hmdr import HMDRClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(-1, 2, size=(60, 4)).astype(float)
    y = np.where(rng.random(60) < 0.5, "a", "b")
    dom = np.where(rng.random(60) < 0.5, "x", "y")
    for data in (X, X * 0.3, X * 0.5):
        HMDRClassifier(lambda_shared=0.01, lambda_domain=0.01, min_domain_samples=1).fit(data, y, domains=dom)


def sample_report(args) -> None:
    _warm_kernels()
    tmp = None
    if args.sample_warehouse:
        warehouse = Path(args.sample_warehouse).resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="hmdr_bench_sample_")
        warehouse = Path(tmp) / "warehouse"
        print(f"sample: building the bundled sample into {warehouse} (load {_load()}) ...", flush=True)
        _build_sample(warehouse)
    try:
        extra = dict(kv.split("=", 1) for kv in args.sample_var)
        stages: dict[str, list[float]] = {"liblinear": [], "cd": []}
        for _ in range(args.sample_repeats):
            for solver in ("liblinear", "cd"):
                r = _fit_stage(warehouse, solver, extra, cold_parse=args.sample_cold_parse)
                stages[solver].append(r["seconds"])
                print(
                    f"sample fit stage, solver {solver:<9}: {r['seconds']:.1f}s = dbt start-up {r['start_up']:.1f}s "
                    f"({'cold' if args.sample_cold_parse else 'warm'} parse) + int_hmdr_fits {r['fit_model']:.1f}s "
                    f"+ the marts and tests after it {r['after']:.1f}s (load {r['load']})",
                    flush=True,
                )
        alone = {}
        for solver in ("liblinear", "cd"):
            p = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "sample_fit_build",
                    "--sample-warehouse",
                    str(warehouse),
                    "--solver",
                    solver,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            )
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            alone[solver] = json.loads(line[7:]) if line else {"error": p.stderr.strip().splitlines()[-1:]}
            print(
                f"sample fit_build alone, solver {solver:<9}: {json.dumps(alone[solver])} (load {_load()})", flush=True
            )
        if "cpu_seconds" in alone["cd"] and "cpu_seconds" in alone["liblinear"]:
            print(
                f"   fit_build alone cd / liblinear: {alone['cd']['cpu_seconds'] / alone['liblinear']['cpu_seconds']:.1%} CPU"
            )
        old, new = min(stages["liblinear"]), min(stages["cd"])
        print(
            f"   fit stage cd / liblinear: {new / old:.1%} (target <= 25%: {_verdict(new <= 0.25 * old)}); "
            f"best of {args.sample_repeats}; vars {extra or 'the defaults'}"
        )
        obj = _sample_objectives(warehouse)
        print(
            f"sample objectives: {obj['n_fits']} fits (representation x mechanism), max |cd - liblinear| / liblinear "
            f"= {obj['max_abs_rel_objective_diff']:.1e} (target <= 1e-6: "
            f"{_verdict(obj['max_abs_rel_objective_diff'] <= 1e-6)}); cd lower in {obj['cd_below_liblinear']}, "
            f"same selected configuration in {obj['same_selected_config']} of {obj['n_fits']}"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--adam-cap", type=float, default=300.0, help="seconds before Adam is stopped (0: skip Adam)")
    ap.add_argument("--adam-lr", type=float, default=0.01)
    ap.add_argument("--baseline-max-n", type=int, default=100000, help="largest n for the baselines")
    ap.add_argument("--sample", action="store_true", help="also time the fit stage on the bundled sample")
    ap.add_argument("--sample-warehouse", help="a warehouse where `preflens run` has built the sample")
    ap.add_argument("--sample-repeats", type=int, default=1)
    ap.add_argument(
        "--sample-cold-parse",
        action="store_true",
        help="time the fit stages with a full dbt parse (default: warm, as in `preflens run`)",
    )
    ap.add_argument("--sample-var", action="append", default=[], help="KEY=VALUE: a dbt var for both fit stages")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--solver", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "sample_fit_build":
        print("RESULT " + json.dumps(_sample_fit_build(args.sample_warehouse, args.solver)))
        return
    if args.child:
        args.task = args.child
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(
        f"HMDR benchmark: 600 concepts (75 shared), 8 domains, alpha={ALPHA}, fixed fit at "
        f"lambda_b={LAM_B}, lambda_s={LAM_S}; selection over the paper's 9-config grid x 5 folds + refit; "
        f"{os.cpu_count()} cores, load {_load()}"
    )
    rows = []
    for n in sizes:
        r: dict[str, Any] = {"n": n, "ours_fit": run("ours_fit", n)}
        if n <= args.baseline_max_n:
            r["lib_fit"] = run("lib_fit", n)
            r["sk_aug_fit"] = run("sk_aug_fit", n)
            r["per_domain"] = run("per_domain", n)
            r["ours_select"] = run("ours_select", n)
            r["lib_select"] = run("lib_select", n)
            r["sk_aug_select"] = run("sk_aug_select", n)
            tgt = r["ours_fit"].get("objective")
            if tgt is not None and args.adam_cap > 0:
                r["adam"] = run(
                    "adam", n, ["--target", repr(tgt), "--adam-cap", str(args.adam_cap), "--adam-lr", str(args.adam_lr)]
                )
        rows.append(r)
        for k, v in r.items():
            if k != "n":
                print(f"n={n:>8} {k:<14} {json.dumps(v, default=float)}", flush=True)
        of = r["ours_fit"]
        print(
            f"n={n:>8} ours: fit {of.get('seconds', float('nan')):.2f}s (peak +{of.get('fit_peak_mb', 0):.0f} MB = "
            f"{of.get('fit_peak_mb', 0) / (n / 1e6):.0f} MB per million pairs, gap {of.get('duality_gap', float('nan')):.1e})"
        )
        if n >= 1_000_000:
            print(
                f"   peak extra memory of one fit at {n:,} pairs <= 1.5 GB: {_verdict(of.get('fit_peak_mb', 1e9) <= 1536)}"
            )
        if "sk_aug_fit" in r:
            lf, sf, pdm = r["lib_fit"], r["sk_aug_fit"], r["per_domain"]
            os_, ls, ss = r["ours_select"], r["lib_select"], r["sk_aug_select"]
            rel_lib = (of["objective"] - lf["objective"]) / lf["objective"]
            rel_sk = (sf["objective"] - of["objective"]) / of["objective"]
            print(
                f"   objective ours - liblinear route: {rel_lib:+.1e} rel (target |.| <= 1e-6: "
                f"{_verdict(abs(rel_lib) <= 1e-6)}); (b) - ours: {rel_sk:+.1e} rel"
            )
            fit_b = _ratio(sf, of)
            print(f"   ratio (b)/ours fit: {fit_b:.2f}x (target >= 8x: {_verdict(fit_b >= 8)})")
            print(f"   ratio liblinear route/ours fit: {_ratio(lf, of):.2f}x")
            pd_r = _ratio(pdm, of)
            print(f"   ratio (c) per-domain/ours fit: {pd_r:.2f}x (target >= 1x: {_verdict(pd_r >= 1)})")
            sel_b = _ratio(ss, os_)
            print(f"   ratio (b)/ours selection: {sel_b:.2f}x (target >= 20x: {_verdict(sel_b >= 20)})")
            print(
                f"   ratio liblinear route/ours selection: {_ratio(ls, os_):.2f}x; selected the same: "
                f"{os_.get('selected') == ls.get('selected')}"
            )
            if "adam" in r:
                ad = r["adam"]
                lb = (
                    ""
                    if ad.get("reached")
                    else f" (Adam stopped at {ad['seconds']:.0f}s, rel gap {ad['rel_gap']:.1e}: lower bound)"
                )
                print(f"   ratio (a) Adam/ours fit: {_ratio(ad, of):.1f}x{lb}")
    if len(rows) > 1:
        ns = np.array([r["n"] for r in rows], float)
        ts = np.array([r["ours_fit"].get("seconds", np.nan) for r in rows])
        slope = np.polyfit(np.log(ns), np.log(ts), 1)[0]
        print(f"scaling ours_fit: time ~ n^{slope:.2f}")
    if args.sample:
        sample_report(args)


if __name__ == "__main__":
    main()
