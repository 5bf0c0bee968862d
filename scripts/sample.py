"""Build the bundled sample (``warehouse/sample/``) from the full shared data set, deterministically.

The sample keeps whole items: every row (mechanism verdict) of a selected item is kept, so the
same pair judged by several mechanisms stays linked by ``item_id``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from pathlib import Path

# Per-stratum item budgets. Linked items (judged by >1 mechanism) are the most valuable:
# they let users compare mechanisms on identical pairs.
LINKED_ITEMS = 650
ITEMS_PER_REWARD_MODEL = 110
ITEMS_PER_HUMAN_MECHANISM = 260
ITEMS_PER_JUDGE_MECHANISM = 90
MIN_ITEMS_PER_DOMAIN = 30


def _rank(item_id: str, seed: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def select_items(rows: list[dict], seed: str = "preflens-sample-v1") -> set[str]:
    """Pick item ids: linked items, then per-mechanism and per-domain quotas."""
    by_item: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_item[r["item_id"]].append(r)
    order = sorted(by_item, key=lambda i: _rank(i, seed))
    chosen: set[str] = set()

    linked = [i for i in order if len({r["mechanism"] for r in by_item[i]}) > 1]
    chosen.update(linked[:LINKED_ITEMS])

    per_mech: dict[str, int] = defaultdict(int)
    for i in chosen:
        for r in by_item[i]:
            per_mech[r["mechanism"]] += 1
    quota = {"reward": ITEMS_PER_REWARD_MODEL, "human": ITEMS_PER_HUMAN_MECHANISM, "judge": ITEMS_PER_JUDGE_MECHANISM}
    for i in order:
        if i in chosen:
            continue
        mechs = {(r["mechanism"], r["mechanism_type"]) for r in by_item[i]}
        if all(per_mech[m] < quota[t] for m, t in mechs):
            chosen.add(i)
            for m, _ in mechs:
                per_mech[m] += 1

    per_domain: dict[str, int] = defaultdict(int)
    for i in chosen:
        per_domain[by_item[i][0]["domain"]] += 1
    for i in order:
        d = by_item[i][0]["domain"]
        if i not in chosen and per_domain[d] < MIN_ITEMS_PER_DOMAIN:
            chosen.add(i)
            per_domain[d] += 1
    return chosen


def build_sample(source: Path, dest: Path) -> dict[str, int]:
    """Write the sample as gzip JSONL (canonical format), rows sorted by pair_id. Returns counts."""
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    chosen = select_items(rows)
    kept = sorted((r for r in rows if r["item_id"] in chosen), key=lambda r: r["pair_id"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 makes the gzip bytes reproducible
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for r in kept:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    return {"rows": len(kept), "items": len(chosen)}


if __name__ == "__main__":  # pragma: no cover - maintenance script
    import sys

    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/pairs.jsonl.gz")
    dst = Path(sys.argv[2] if len(sys.argv) > 2 else "warehouse/sample/pairs_sample.jsonl.gz")
    print(build_sample(src, dst))
