"""HMDR speed benchmark against named baselines, measured in the same run (never asserted in tests).

Data: py_models.synthetic.make_planted -- n pairs x 600 concepts (75 shared, the rest specific to 1-3 of 8
domains), comp-rep-like {-1, 0, 1}, ~15% non-zero. Hyperparameters: alpha = 1/8, the paper's grid at |D| = 8.

Measured, each task in its own subprocess (wall time and peak RSS of that process, minus the RSS after the data
was generated):
  ours_fit      HMDRClassifier at lambda_b = 1/32, lambda_s = 1/64 (sparse augmented design, analytic
                symmetrisation, liblinear, certified by a duality gap)
  ours_select   9 configs x 5 folds (warm-started grid paths on one design) + refit
  adam          (a) the paper's approach: full-batch Adam on Eq. 1 in numpy, run until its objective is within
                1e-4 relative of ours (or a time cap; then the ratio is a lower bound)
  sk_aug_fit    (b) scikit-learn LogisticRegression(penalty='l1', solver='liblinear', default settings) on the
                literal §4.5 augmented design (rows symmetrised, alpha rows, b-block rescaled), built per fit
  sk_aug_select (b) the same for the full selection (design rebuilt per fold, no warm starts)
  per_domain    (c) independent per-domain scikit-learn L1 fits (the peers' way), C = 1/(lambda_s n_d)

Usage: python benchmarks/hmdr_bench.py [--sizes 10000,100000,1000000] [--adam-cap 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPHA, LAM_B, LAM_S = 1 / 8, 1 / 32, 1 / 64


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data(n: int):
    from py_models.synthetic import make_planted

    return make_planted(n, seed=0)


def _ours_obj(D, b, S):
    from py_models._augment import hmdr_objective

    y_pm = np.where(D.y == "a", 1.0, -1.0)
    idx = np.searchsorted(D.domain_names, D.domains)
    return hmdr_objective(D.X, y_pm, idx, b, S, ALPHA, LAM_B, LAM_S)


def task_ours_fit(D, args):
    from py_models.hmdr import HMDRClassifier

    t = time.perf_counter()
    m = HMDRClassifier(
        alpha=ALPHA,
        lambda_shared=LAM_B,
        lambda_domain=LAM_S,
        shared_mask=D.shared_mask,
        domain_masks=D.domain_masks,
        min_domain_samples=1,
    ).fit(D.X, D.y, domains=D.domains)
    sec = time.perf_counter() - t
    return {
        "seconds": sec,
        "objective": m.objective_,
        "duality_gap": m.duality_gap_,
        "kkt_violation": m.kkt_violation_,
        "nnz": int(np.count_nonzero(m.coef_shared_) + np.count_nonzero(m.coef_domain_)),
    }


def task_ours_select(D, args):
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
    ).fit(D.X, D.y, domains=D.domains)
    return {"seconds": time.perf_counter() - t, "objective": m.objective_, "selected": m.selected_config_}


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
    D = _data(args.n)
    base = _rss_mb()
    out = TASKS[args.task](D, args)
    out["peak_mb"] = _rss_mb()
    out["fit_peak_mb"] = out["peak_mb"] - base
    print("RESULT " + json.dumps(out, default=float))


def run(task: str, n: int, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", task, "--n", str(n), *(extra or [])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--adam-cap", type=float, default=300.0, help="seconds before Adam is stopped")
    ap.add_argument("--adam-lr", type=float, default=0.01)
    ap.add_argument("--baseline-max-n", type=int, default=100000, help="largest n for the baselines")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.task = args.child
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"HMDR benchmark: 600 concepts (75 shared), 8 domains, alpha={ALPHA}, fixed fit at "
        f"lambda_b={LAM_B}, lambda_s={LAM_S}; selection over the paper's 9-config grid x 5 folds + refit"
    )
    rows = []
    for n in sizes:
        r = {"n": n, "ours_fit": run("ours_fit", n), "ours_select": run("ours_select", n)}
        if n <= args.baseline_max_n:
            r["sk_aug_fit"] = run("sk_aug_fit", n)
            r["sk_aug_select"] = run("sk_aug_select", n)
            r["per_domain"] = run("per_domain", n)
            tgt = r["ours_fit"].get("objective")
            if tgt is not None:
                r["adam"] = run(
                    "adam", n, ["--target", repr(tgt), "--adam-cap", str(args.adam_cap), "--adam-lr", str(args.adam_lr)]
                )
        rows.append(r)
        for k, v in r.items():
            if k != "n":
                print(f"n={n:>8} {k:<14} {json.dumps(v, default=float)}", flush=True)
        of, os_ = r["ours_fit"], r["ours_select"]
        print(
            f"n={n:>8} ours: fit {of.get('seconds', float('nan')):.2f}s (peak +{of.get('fit_peak_mb', 0):.0f} MB,"
            f" gap {of.get('duality_gap', float('nan')):.1e}), selection {os_.get('seconds', float('nan')):.1f}s "
            f"(peak +{os_.get('fit_peak_mb', 0):.0f} MB)"
        )
        if "sk_aug_fit" in r:
            sf, ss, ad, pdm = r["sk_aug_fit"], r["sk_aug_select"], r["adam"], r["per_domain"]
            rel = (sf["objective"] - of["objective"]) / of["objective"]
            print(
                f"   ratio (b)/ours fit: {sf['seconds'] / of['seconds']:.2f}x  (objective (b) - ours: {rel:+.1e} rel)"
            )
            print(f"   ratio (b)/ours selection: {ss['seconds'] / os_['seconds']:.2f}x")
            lb = (
                ""
                if ad.get("reached")
                else f" (Adam stopped at {ad['seconds']:.0f}s, rel gap {ad['rel_gap']:.1e}: lower bound)"
            )
            print(f"   ratio (a) Adam/ours fit: {ad['seconds'] / of['seconds']:.1f}x{lb}")
            print(f"   ratio (c) per-domain/ours fit: {pdm['seconds'] / of['seconds']:.2f}x")
    if len(rows) > 1:
        ns = np.array([r["n"] for r in rows], float)
        for key in ("ours_fit", "ours_select"):
            ts = np.array([r[key].get("seconds", np.nan) for r in rows])
            slope = np.polyfit(np.log(ns), np.log(ts), 1)[0]
            print(f"scaling {key}: time ~ n^{slope:.2f}")


if __name__ == "__main__":
    main()
