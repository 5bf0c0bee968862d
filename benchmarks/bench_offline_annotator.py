"""Benchmark the vectorised offline annotator against a naive per-row pure-Python baseline.

Loads every distinct item of ../shared/data (pairs + ties, deduplicated on item_id), times
``annotate_items`` on all of them (all concepts, then only the baseline's concepts), and times
``baseline_python_loop``: a row-by-row pure-Python implementation of 6 of the same scorers with the
same bins and comp-rep logic, on all items (or a subset, extrapolated). Best-of-N timings.

    .venv/bin/python benchmarks/bench_offline_annotator.py [--data-dir DIR] [--baseline-n N]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.annotate.catalog import CONCEPTS, CONCEPTS_BY_KEY  # noqa: E402
from pipelines.annotate.offline import annotate_items  # noqa: E402
from pipelines.annotate.scorers import (  # noqa: E402
    FENCED_BLOCK,
    HEADER,
    HEDGE,
    LIST_ITEM,
    NOT_REFUSAL,
    REFUSAL,
    WORD,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BASELINE_KEYS = ("length", "structure", "hedging", "refusal", "lexical_diversity", "repetition")


def load_items(data_dir: Path) -> pl.DataFrame:
    """All distinct items (item_id, prompt, response_a, response_b) from pairs + ties."""
    cols = ["item_id", "prompt", "response_a", "response_b"]
    frames = [
        pl.read_ndjson(p, infer_schema_length=None).select(cols) for p in sorted(data_dir.glob("pairs*.jsonl.gz"))
    ]
    return pl.concat(frames).unique("item_id", keep="first", maintain_order=True)


def baseline_python_loop(items: pl.DataFrame) -> list[tuple[str, str, int, int, int]]:
    """Naive per-row pure Python for BASELINE_KEYS: same patterns, bins and comp-rep as the
    vectorised scorers, but one item, one response and one concept at a time."""
    fenced, word, quotes = re.compile(FENCED_BLOCK), re.compile(WORD), re.compile("[\u2018\u2019\u02bc]")
    pats = {
        k: re.compile(p)
        for k, p in {
            "list": LIST_ITEM,
            "header": HEADER,
            "hedge": HEDGE,
            "refusal": REFUSAL,
            "not_refusal": NOT_REFUSAL,
        }.items()
    }

    def measure(key: str, text: str) -> float:
        if key == "length":
            return float(len(text))
        if key == "structure":
            return len(pats["list"].findall(text)) + 2.0 * len(pats["header"].findall(text))
        norm = quotes.sub("'", text)
        if key == "refusal":
            low = pats["not_refusal"].sub(" ", norm.lower())
            return len(pats["refusal"].findall(low)) + 2.0 * bool(pats["refusal"].search(low[:120]))
        prose = fenced.sub(" \n", norm).lower()
        words = word.findall(prose)
        if key == "hedging":
            return 100.0 * len(pats["hedge"].findall(prose)) / max(len(words), 1)
        if key == "repetition":
            tri = [(words[i], words[i + 1], words[i + 2]) for i in range(len(words) - 2)]
            return 1.0 - len(set(tri)) / len(tri) if tri else 0.0
        head = words[:100]
        return len(set(head)) / len(head) if head else 0.0

    out = []
    for row in items.iter_rows(named=True):
        for key in BASELINE_KEYS:
            c = CONCEPTS_BY_KEY[key]
            ma, mb = measure(key, row["response_a"] or ""), measure(key, row["response_b"] or "")
            sa = 1 + sum(ma >= e for e in c.bin_edges)
            sb = 1 + sum(mb >= e for e in c.bin_edges)
            tol = max(c.abs_tol, c.rel_tol * max(abs(ma), abs(mb)))
            comp = 0 if abs(ma - mb) <= tol else (1 if ma > mb else -1)
            out.append((row["item_id"], c.name, sa, sb, comp))
    return out


def _best_of(repeats: int, fn, *args, **kwargs) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--baseline-n", type=int, default=0, help="baseline items (0 = all; else extrapolated)")
    ap.add_argument("--repeats", type=int, default=3, help="best-of-N timings (the machine may be shared)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    items = load_items(args.data_dir)
    n = items.height
    print(f"loaded {n:,} distinct items in {time.perf_counter() - t0:.2f}s (polars {pl.__version__})")

    annotate_items(items.head(200))  # warm-up (regex compilation, thread pool)
    vec_s, rows = _best_of(args.repeats, annotate_items, items)
    print(
        f"annotate_items, all {len(CONCEPTS)} concepts: {n:,} items -> {rows.height:,} rows "
        f"in {vec_s:.2f}s = {n / vec_s:,.0f} items/s (best of {args.repeats})"
    )

    subset = [CONCEPTS_BY_KEY[k] for k in BASELINE_KEYS]
    vec5_s, rows5 = _best_of(args.repeats, annotate_items, items, concepts=subset)
    print(f"annotate_items, the {len(subset)} baseline concepts: {vec5_s:.2f}s = {n / vec5_s:,.0f} items/s")

    sub = items if args.baseline_n <= 0 else items.head(min(args.baseline_n, n))
    t0 = time.perf_counter()
    base = baseline_python_loop(sub)
    base_s = time.perf_counter() - t0
    base_full = base_s * n / sub.height
    note = "" if sub.height == n else f" (ran {sub.height:,} items, extrapolated)"
    print(f"baseline_python_loop, same {len(subset)} concepts: {base_full:.2f}s = {n / base_full:,.0f} items/s{note}")

    got = pl.DataFrame(base, schema=["item_id", "concept", "b_sa", "b_sb", "b_comp"], orient="row")
    both = rows5.filter(pl.col("is_relevant")).join(got, on=["item_id", "concept"])
    agree = (
        (both["score_a"] == both["b_sa"]) & (both["score_b"] == both["b_sb"]) & (both["comp_value"] == both["b_comp"])
    )
    print(f"baseline vs vectorised agreement (relevant rows): {agree.mean():.4f} over {both.height:,} rows")
    print(f"speedup on the same {len(subset)} concepts: {base_full / vec5_s:.1f}x")
    print(f"target <30s for all items x all concepts: {'PASS' if vec_s < 30 else 'FAIL'} ({vec_s:.2f}s)")


if __name__ == "__main__":
    main()
