"""Planted-weight synthetic preference data for tests and benchmarks (pure, seeded, no I/O).

Shape follows the issue's benchmark spec: ``n_concepts`` concepts of which ``n_shared`` are shared; every
other concept is specific to 1-3 of ``n_domains`` domains. A pair of domain d can only have non-zero values on
shared ∪ specific(d) (the annotator marks the rest "not relevant" = 0). Values are comp-rep-like {-1, 0, +1},
``density`` is the overall fraction of non-zeros. Labels come from a logistic model with a planted shared
vector b (zero outside the shared concepts) plus sparse domain deviations s_d (inside shared ∪ specific(d)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from py_models._augment import sigmoid

__all__ = ["SyntheticData", "make_planted"]


@dataclass
class SyntheticData:
    X: sp.csr_matrix  # (n, p) float64 in {-1, 0, 1}
    y: NDArray[np.object_]  # 'a' / 'b'
    domains: NDArray[np.object_]
    b: NDArray[np.float64]  # planted shared weights (p,)
    S: NDArray[np.float64]  # planted deviations (n_domains, p), rows in sorted domain order
    domain_names: list[str]
    shared_mask: NDArray[np.bool_]
    domain_masks: dict[str, NDArray[np.bool_]]
    concept_names: list[str]


def make_planted(
    n_pairs: int,
    n_concepts: int = 600,
    n_shared: int = 75,
    n_domains: int = 8,
    density: float = 0.15,
    n_active_shared: int = 20,
    n_dev_per_domain: int = 6,
    domain_sizes: dict[str, int] | None = None,
    seed: int = 0,
) -> SyntheticData:
    """Generate a sparse planted data set (see module docstring).

    ``domain_sizes`` overrides the even split of ``n_pairs`` (e.g. to plant a tiny domain).
    """
    rng = np.random.default_rng(seed)
    p = n_concepts
    names = [f"d{k}" for k in range(n_domains)]
    sizes = domain_sizes or {d: n_pairs // n_domains + (k < n_pairs % n_domains) for k, d in enumerate(names)}
    names = sorted(sizes)
    shared = np.zeros(p, dtype=bool)
    shared[:n_shared] = True
    masks = {d: shared.copy() for d in names}
    for j in range(n_shared, p):
        for d in rng.choice(names, size=int(rng.integers(1, min(3, len(names)) + 1)), replace=False):
            masks[str(d)][j] = True
    relevant_frac = np.mean([m.mean() for m in masks.values()])
    q = min(0.95, density / max(relevant_frac, 1e-9))

    b = np.zeros(p)
    act = rng.choice(n_shared, size=min(n_active_shared, n_shared), replace=False)
    b[act] = rng.choice([-1, 1], size=len(act)) * rng.uniform(0.3, 1.2, size=len(act))
    S = np.zeros((len(names), p))
    for k, d in enumerate(names):
        cand = np.flatnonzero(masks[d])
        dev = rng.choice(cand, size=min(n_dev_per_domain, len(cand)), replace=False)
        S[k, dev] = rng.choice([-1, 1], size=len(dev)) * rng.uniform(0.4, 1.2, size=len(dev))

    blocks, ys, doms = [], [], []
    for k, d in enumerate(names):
        n_d = int(sizes[d])
        cols = np.flatnonzero(masks[d])
        nz = rng.random((n_d, len(cols))) < q
        r, c = np.nonzero(nz)
        vals = rng.choice([-1.0, 1.0], size=len(r))
        Xd = sp.csr_matrix((vals, (r, cols[c])), shape=(n_d, p))
        z = Xd @ (b + S[k])
        ys.append(np.where(rng.random(n_d) < sigmoid(z), "a", "b"))
        blocks.append(Xd)
        doms.append(np.full(n_d, d, dtype=object))
    X = sp.vstack(blocks, format="csr")
    perm = rng.permutation(X.shape[0])
    return SyntheticData(
        X=X[perm],
        y=np.concatenate(ys).astype(object)[perm],
        domains=np.concatenate(doms)[perm],
        b=b,
        S=S,
        domain_names=names,
        shared_mask=shared,
        domain_masks=masks,
        concept_names=[f"c{j:03d}" for j in range(p)],
    )
