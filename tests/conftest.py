"""Shared fixtures: repo paths, an isolated warehouse per test, a planted-signal raw warehouse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty warehouse folder, exported as PREFLENS_WAREHOUSE."""
    wh = tmp_path / "warehouse"
    wh.mkdir()
    monkeypatch.setenv("PREFLENS_WAREHOUSE", str(wh))
    return wh


def planted_concepts() -> list[str]:
    """Concept names for the planted fixture; one is hostile to prove names are data, not SQL."""
    return ["Clarity", "Verbosity", "Hedging", "Politeness", "Robert'); drop table raw.items; --"]


def write_planted_raw(db_path: Path, n_items: int = 240, seed: int = 7, start: int = 0) -> dict[str, object]:
    """Fill the raw tables with synthetic items whose labels follow known concept weights.

    Two mechanisms: 'human:planted' prefers higher Clarity everywhere and lower Verbosity in domain
    'legal' only; 'judge:noise' is random. Domains: general, legal, coding.
    """
    from pipelines.warehouse import connect

    rng = np.random.default_rng(seed)
    concepts = planted_concepts()
    domains = ["general", "legal", "coding"]
    con = connect(db_path)
    items, labels, annotations = [], [], []
    for i in range(start, start + n_items):
        item_id = hashlib.sha256(f"item{i}".encode()).hexdigest()[:16]
        domain = domains[i % 3]
        x = rng.choice([-1, 0, 1], size=len(concepts))
        z = 2.0 * x[0] + (-2.0 * x[1] if domain == "legal" else 0.0)
        winner = "a" if rng.random() < 1 / (1 + np.exp(-z)) else "b"
        items.append((item_id, f"prompt {i}", f"response a {i}", f"response b {i}", domain))
        labels.append((hashlib.sha256(f"{item_id}h".encode()).hexdigest()[:16], item_id, "human:planted", "human", winner))
        labels.append(
            (hashlib.sha256(f"{item_id}j".encode()).hexdigest()[:16], item_id, "judge:noise", "judge", str(rng.choice(["a", "b"])))
        )
        for name, v in zip(concepts, x):
            sa, sb = (5, 3) if v > 0 else (3, 5) if v < 0 else (4, 4)
            annotations.append((item_id, name, "offline", "test-1", int(sa), int(sb), int(v), sa - sb))
    con.executemany(
        "insert into raw.items values (?, ?, ?, ?, ?, 'fixture', null, null, null, 'ing0', now())", items
    )
    con.executemany(
        "insert into raw.labels values (?, ?, ?, ?, ?, null, null, 'fixture.jsonl', 1, 'ing0', now())", labels
    )
    con.executemany(
        "insert into raw.domains select ?, 'fixture', 'ing0' where ? not in (select domain from raw.domains)",
        [(d, d) for d in domains],
    )
    con.executemany(
        "insert or ignore into raw.concepts values (?, 'offline', 'test-1', 'd', ?, 'offline', true, null, 'h')",
        [(c, f"A high score indicates {c}; A low score indicates not {c}.") for c in concepts],
    )
    con.executemany(
        """insert into raw.annotations values (?, ?, ?, ?, null, null, ?, ?, ?, ?, true, null, now())""",
        annotations,
    )
    con.close()
    return {"n_items": n_items, "n_labels": len(labels), "concepts": concepts}


def venv_bin(name: str) -> str:
    import sys

    return str(Path(sys.executable).parent / name)


def env_with(**kw: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(kw)
    return env
