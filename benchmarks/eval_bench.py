"""`preflens evaluate` unit benchmark: the evaluation units of the bundled sample, new route against the old one,
timed in the same run (never asserted in tests).

Data: the designs `preflens evaluate` builds (``load_designs``) from a warehouse where `preflens run` has built
the sample (read under the build lock). Units: for every mechanism and variant group, the first ``--splits``
in-domain splits and the first ``--ood`` OOD runs of the default plan (25 splits, 5 seeds).

Each unit runs as a worker runs it (``run_counted``: one BLAS and one solver thread, scikit-learn's per-call
checks off), once per route, the routes alternating unit by unit so that load changes hit both alike:
  new   the L1 baselines (shared_only + flat_pooled, specific_only) on the cd kernel (``baseline_solver="cd"``:
        every fold's C path on one stored design, warm starts along C); peer_enet's saga called directly
  old   the same units with ``baseline_solver="liblinear"`` (scikit-learn's estimators per fold and C, as before)
HMDR variants (hmdr, hmdr_paper, dirty) do not depend on the route; they run once and are reported with their
share of the new route's time.

Printed per variant group: CPU seconds per unit of each route, the ratio old / new, rows whose accuracy or
selected configuration differ between the routes (CV near-ties), and the largest log-loss difference; then the
projected CPU time of the whole default evaluation (mean CPU per unit x units in the plan) per route, and that
divided by the worker count (a lower bound on its wall time). The load average is printed with every figure.

``--representation`` is `preflens evaluate`'s (default measure, its default; ``all``: every representation, the
plan of ``preflens evaluate --representation all``); the projection is printed per representation and in total.

Usage: python benchmarks/eval_bench.py [--warehouse DIR] [--splits 2] [--ood 1] [--representation measure|all]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUTE_FREE = ("hmdr", "hmdr_paper", "dirty")


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _one_thread() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PREFLENS_HMDR_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _pick(units: list[Any], n_splits: int, n_ood: int) -> list[Any]:
    """The first ``n_splits`` in-domain units and ``n_ood`` OOD units of every (mechanism, variant group)."""
    seen: dict[tuple[str, str, str, tuple[str, ...]], int] = defaultdict(int)
    out = []
    for u in units:
        key = (u.representation, u.mechanism, u.protocol, u.variants)
        if seen[key] < (n_splits if u.protocol == "in_domain" else n_ood):
            seen[key] += 1
            out.append(u)
    return out


def _group(unit: Any) -> str:
    """``representation variant+variant``: what the figures are reported by."""
    return f"{unit.representation} {'+'.join(unit.variants)}"


def _timed(design: Any, unit: Any, settings: Any) -> tuple[list[dict[str, Any]], float]:
    from pipelines.evaluate.workers import run_counted

    t0 = time.process_time()
    _, rows, *_ = run_counted(design, unit, settings)
    return rows, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", default="warehouse", help="a warehouse where `preflens run` built the sample")
    ap.add_argument(
        "--representation", default="measure", help="a representation, or all (default measure, as preflens evaluate)"
    )
    ap.add_argument("--splits", type=int, default=2, help="in-domain splits per mechanism and variant group")
    ap.add_argument("--ood", type=int, default=1, help="OOD runs per mechanism and variant group")
    ap.add_argument("--jobs", type=int, default=2, help="worker count the projection divides by")
    args = ap.parse_args()
    _one_thread()

    from pipelines.core.config import Paths
    from pipelines.core.lock import locked_build_db
    from pipelines.evaluate.runner import load_designs, schedule
    from py_models.eval_protocols import ProtocolSettings
    from py_models.representations import REPRESENTATION_NAMES

    reps = list(REPRESENTATION_NAMES) if args.representation == "all" else [args.representation]
    paths = Paths(Path(args.warehouse).resolve())
    with locked_build_db(paths, read_only=True) as con:
        designs, _ = load_designs(con, reps, None)
    new, old = ProtocolSettings(), ProtocolSettings(baseline_solver="liblinear")
    plan = schedule(designs, new)
    units = _pick(plan, args.splits, args.ood)
    print(f"{len(designs)} designs ({', '.join(reps)}), {len(plan)} units in the plan, {len(units)} timed; {_load()}")

    # warm-up: imports and numba's compiled-kernel cache, one unit of each group and route
    for u in _pick(plan, 1, 0)[:8]:
        for s in (new, old):
            _timed(designs[(u.representation, u.mechanism)], u, s)

    cpu: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[str, int] = defaultdict(int)
    diff_acc: dict[str, int] = defaultdict(int)
    diff_cfg: dict[str, int] = defaultdict(int)
    n_rows: dict[str, int] = defaultdict(int)
    max_ll: dict[str, float] = defaultdict(float)
    t_start = time.perf_counter()
    for u in units:
        g = _group(u)
        design = designs[(u.representation, u.mechanism)]
        rows_new, c_new = _timed(design, u, new)
        cpu[g]["new"] += c_new
        count[g] += 1
        if u.variants[0] in ROUTE_FREE:
            cpu[g]["old"] += c_new
            continue
        rows_old, c_old = _timed(design, u, old)
        cpu[g]["old"] += c_old
        for a, b in zip(rows_new, rows_old):
            n_rows[g] += 1
            diff_acc[g] += a["accuracy"] != b["accuracy"]
            diff_cfg[g] += a["selected_config"] != b["selected_config"]
            max_ll[g] = max(max_ll[g], abs(a["log_loss"] - b["log_loss"]))
    print(f"timed in {time.perf_counter() - t_start:.1f}s wall; {_load()}")

    in_plan: dict[str, int] = defaultdict(int)
    for u in plan:
        in_plan[_group(u)] += 1
    total = {"new": 0.0, "old": 0.0}
    print(
        f"{'representation variant group':36s} {'units':>6s} {'old ms/unit':>12s} {'new ms/unit':>12s} {'old/new':>8s} "
        f"{'share new':>9s} {'rows':>6s} {'acc diff':>8s} {'cfg diff':>8s} {'max dLL':>9s}"
    )
    proj = {g: {r: cpu[g][r] / count[g] * in_plan[g] for r in ("new", "old")} for g in cpu}
    for r in total:
        total[r] = sum(p[r] for p in proj.values())
    for g in sorted(cpu, key=lambda k: -proj[k]["new"]):
        o, n = cpu[g]["old"] / count[g], cpu[g]["new"] / count[g]
        free = g.split(" ")[1].split("+")[0] in ROUTE_FREE
        print(
            f"{g:36s} {in_plan[g]:6d} {1e3 * o:12.1f} {1e3 * n:12.1f} {o / n if n else float('nan'):8.2f} "
            f"{proj[g]['new'] / total['new']:9.1%} "
            + (
                "     (same route: run once)"
                if free
                else f"{n_rows[g]:6d} {diff_acc[g]:8d} {diff_cfg[g]:8d} {max_ll[g]:9.1e}"
            )
        )
    for rep in reps if len(reps) > 1 else []:
        part = {r: sum(p[r] for g, p in proj.items() if g.split(" ")[0] == rep) for r in ("new", "old")}
        print(f"  {rep}: CPU old {part['old']:.0f}s, new {part['new']:.0f}s ({part['new'] / total['new']:.0%} of new)")
    print(
        f"projected evaluation ({args.representation}): CPU old {total['old']:.0f}s, new {total['new']:.0f}s "
        f"(old/new {total['old'] / total['new']:.2f}); / {args.jobs} workers: old {total['old'] / args.jobs:.0f}s, "
        f"new {total['new'] / args.jobs:.0f}s; {_load()}"
    )


if __name__ == "__main__":
    main()
