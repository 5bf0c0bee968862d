"""Shared pieces of the two applications: concept weights from the served copy, Wilson intervals, tables."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.llm.prompting import numbered_concepts
from pipelines.serve.served import connect_served, latest_fit_id
from py_models.mart_keys import SHARED_DOMAIN

SHARED = SHARED_DOMAIN  # fct_concept_effects' row of the shared vector b


class ApplyError(LookupError):
    """Missing explanation, mechanism or data for an application."""


@dataclass(frozen=True)
class Concept:
    name: str
    definition: str
    weight: float = 0.0


def judge_mechanism(judge: str) -> str:
    """``--judge M``: a model name (mechanism ``judge:M``) or a full mechanism name."""
    return judge if ":" in judge and judge.split(":", 1)[0] in {"judge", "reward", "human"} else f"judge:{judge}"


def judge_model(judge: str) -> str:
    mech = judge_mechanism(judge)
    return mech.split(":", 1)[1].split("+", 1)[0]


class Explanations:
    """Latest-fit concept weights (``fct_concept_effects``) and definitions (``dim_concepts``) of a served copy."""

    def __init__(self, serve_db: Path, representation: str = "comp") -> None:
        con = connect_served(
            serve_db,
            error=ApplyError,
            hint="run `preflens build` first (the applications use the published explanations)",
        )
        try:
            fit = latest_fit_id(con)
            if fit is None:
                raise ApplyError(f"{serve_db} holds no fitted model yet")
            rows = con.execute(
                """select mechanism, domain, concept, total_weight from marts.fct_concept_effects
                   where fit_id = ? and representation = ? and control = 'none'""",
                [fit, representation],
            ).fetchall()
            self.definitions = {
                c: d for c, d in con.execute("select concept, definition from marts.dim_concepts").fetchall()
            }
        except duckdb.CatalogException as exc:
            raise ApplyError(f"{serve_db} is not a preflens served copy: {exc}") from exc
        finally:
            con.close()
        self.fit_id = fit
        self.weights: dict[tuple[str, str], dict[str, float]] = {}
        for mech, dom, concept, w in rows:
            self.weights.setdefault((mech, dom), {})[concept] = float(w or 0.0)
        self.mechanisms = sorted({m for m, _ in self.weights})

    def resolve(self, mechanism: str) -> str:
        if mechanism in self.mechanisms:
            return mechanism
        if ":" not in mechanism:  # 'human' -> the only/first human mechanism with a fit
            cands = [m for m in self.mechanisms if m.startswith(mechanism + ":")]
            if cands:
                return cands[0]
        raise ApplyError(
            f"mechanism {mechanism!r} has no explanation in fit {self.fit_id} (fitted: "
            f"{', '.join(self.mechanisms) or 'none'}); judge / ingest it and run `preflens build`"
        )

    def domain_weights(self, mechanism: str, domain: str) -> dict[str, float]:
        """b + s_d for the domain; b alone (domain ``__shared__``) for a domain the fit did not see."""
        w = self.weights.get((mechanism, domain)) or self.weights.get((mechanism, SHARED))
        if w is None:
            raise ApplyError(f"no weights for {mechanism!r}")
        return w

    def concept(self, name: str, weight: float = 0.0) -> Concept:
        return Concept(name, self.definitions.get(name, name), weight)

    def top_k(self, weights: dict[str, float], k: int) -> list[Concept]:
        """The k largest weights (rewarded concepts first; ties by name for determinism)."""
        ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
        return [self.concept(c, w) for c, w in ranked[:k]]

    def random_k(self, k: int, rng: random.Random, pool: list[str] | None = None) -> list[Concept]:
        names = sorted(pool if pool is not None else self.definitions)
        return [self.concept(c) for c in rng.sample(names, min(k, len(names)))]


def wilson(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion (ties count as half a success)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def concepts_data(concepts: list[Concept]) -> str:
    """The CONCEPTS block of a prompt: each concept's name and definition."""
    return numbered_concepts([(c.name, c.definition) for c in concepts])[1]
