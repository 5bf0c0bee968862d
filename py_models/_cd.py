"""Eq. 1 solved on the design itself: proximal Newton with coordinate descent, working sets, warm starts (numba).

The data X (n x p) is stored once, column-major, with the rows grouped by domain block (block 0: rows whose domain
has no weights of its own, block k + 1: weighted domain k), so that the entries of column j for block k are one
contiguous range. A shared weight b_j reads its whole column, a deviation s_kj reads its block's range: the
augmented design of :class:`py_models._augment.AugmentedDesign` is never materialised, and the shared-loss rows
(weight alpha) and the mirror rows of the symmetrisation are analytic. Row indices are int32 (int64 from 2^31 rows),
values int8, float32 or float64: the smallest type that holds every value exactly (comp-rep and score-rep values
are small integers), so the design costs 5 bytes per non-zero for comp-rep.

The coefficient vector ``beta`` has the layout of the augmented design, ``[b[shared_cols] | s_0[domain_cols[0]] |
...]``, so solutions, warm starts and :meth:`DomainDesign.unpack` are interchangeable between the two routes.

Solver (glmnet, newGLMNET): at beta, the smooth loss is replaced by its second-order model in the two logits of
each instance, z_f = (b + s_d)'x and z_s = b'x (weights w_i / N and alpha w_i / N); the model plus the L1 penalty
is minimised by cyclic coordinate descent with soft-thresholding on the working set (passes over the coordinates'
entries, or, for a small working set, over its Gram matrix: then each update costs O(working set), not a pass over
the coordinate's pairs), then an Armijo line search on the true objective accepts the step. Working set: the non-zeros plus the coordinates that violate the optimality
conditions most (at most doubling per round), or, from a warm start, the sequential strong rule's set. Each round
ends with the full gradient, which certifies the result: the KKT violation and the duality gap of the dual point of
``AugmentedDesign.diagnostics`` (residuals scaled into the dual feasible set). The solve stops when the gap is at
most ``tol`` x objective x ``GAP_FACTOR``.

Threads: every kernel releases the GIL (``nogil``); :func:`map_threads` runs independent solves (CV folds,
bootstrap resamples) on ``solver_threads()`` threads: ``PREFLENS_HMDR_THREADS`` if set (1 = off), else numba's
thread count (the machine's cores; 1 inside joblib workers, which set ``NUMBA_NUM_THREADS`` per worker), when the
design has at least ``THREAD_MIN_ENTRIES`` stored entries. Results do not depend on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from numba import njit
from numpy.typing import NDArray

from py_models._augment import BlockLayout

__all__ = ["DomainDesign", "GAP_FACTOR", "THREAD_MIN_ENTRIES", "map_threads", "solver_threads", "threads"]

#: the solve stops when duality gap <= tol * objective * GAP_FACTOR (tol = 1e-6: the objective is certified to
#: 1e-7 relative; the Newton steps converge quadratically, so the factor 10 costs less than one step)
GAP_FACTOR = 1e-1
THREADS_ENV = "PREFLENS_HMDR_THREADS"
#: designs with fewer stored entries solve in the calling thread (see ``map_threads``)
THREAD_MIN_ENTRIES = 50_000
_MIN_WS = 32  # first working set of a cold start (then at most doubling per round)
_INNER_MAX = 200  # coordinate-descent passes per Newton step
_INNER_REL = 1e-3  # a Newton step's passes stop when the largest curv * change^2 falls below this x the first pass'
_MAX_ROUNDS = 200
_ARMIJO = 1e-2
_GRAM_PASSES = 16  # the inner problem on its Gram matrix when that costs less than this many passes over the entries
_GRAM_MAX = 96  # ... and the working set has at most this many coordinates
_GRAM_REL = 1e-6  # passes on the Gram matrix are cheap: they stop at this x the first pass' largest change

R = TypeVar("R")


# ------------------------------------------------------------------------------------------------ threads
_THREADS_OVERRIDE: list[int] = []


def solver_threads() -> int:
    """Threads for independent solves: ``threads(n)`` if active, else ``PREFLENS_HMDR_THREADS``, else numba's."""
    if _THREADS_OVERRIDE:
        return _THREADS_OVERRIDE[-1]
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise ValueError(f"{THREADS_ENV} must be an integer >= 1, got {env!r}") from exc
        if n < 1:
            raise ValueError(f"{THREADS_ENV} must be an integer >= 1, got {env!r}")
        return n
    import numba

    return max(1, min(int(getattr(numba.config, "NUMBA_NUM_THREADS", 1)), os.cpu_count() or 1))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` solver threads (1 = no threads)."""
    if int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _THREADS_OVERRIDE.append(int(n))
    try:
        yield
    finally:
        _THREADS_OVERRIDE.pop()


def map_threads(
    func: Callable[..., R], args: Sequence[Any], n_threads: int | None = None, *, work: int | None = None
) -> list[R]:
    """``[func(a) for a in args]`` on ``n_threads`` threads (default ``solver_threads()``), results in order.

    ``work``: the stored entries of the design each call solves on; below ``THREAD_MIN_ENTRIES`` the calls run in
    this thread (a solve of a few hundred pairs takes about a millisecond, less than handing it to a thread)."""
    n = solver_threads() if n_threads is None else int(n_threads)
    if n <= 1 or len(args) < 2 or (work is not None and work < THREAD_MIN_ENTRIES):
        return [func(a) for a in args]
    with ThreadPoolExecutor(max_workers=min(n, len(args))) as pool:
        return list(pool.map(func, args))


# ------------------------------------------------------------------------------------------------ kernels
@njit(cache=True, nogil=True)
def _resid_loss(m: float) -> tuple[float, float]:
    """(sigma(-m), log(1 + exp(-m))) from one exp and one log1p (the loss as numpy's logaddexp(0, -m))."""
    if m >= 0.0:
        e = np.exp(-m)
        return e / (1.0 + e), np.log1p(e)
    e = np.exp(m)
    return 1.0 / (1.0 + e), -m + np.log1p(e)


@njit(cache=True, nogil=True)
def _entropy(r: float) -> float:
    r = min(max(r, 1e-300), 1.0)
    q = min(max(1.0 - r, 1e-300), 1.0)
    return -(r * np.log(r) + q * np.log(q))


@njit(cache=True, nogil=True)
def _value_code_1d(data: Any) -> int:
    """0: every value an integer in [-127, 127] (int8); 1: float32-exact; 2: float64."""
    code = 0
    for k in range(data.shape[0]):
        v = data[k]
        if code == 0 and not (v == np.floor(v) and -127.0 <= v <= 127.0):
            code = 1
        if code == 1 and np.float64(np.float32(v)) != v:
            return 2
    return code


@njit(cache=True, nogil=True)
def _value_code_2d(X: Any) -> int:
    code = 0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            v = X[i, j]
            if code == 0 and not (v == np.floor(v) and -127.0 <= v <= 127.0):
                code = 1
            if code == 1 and np.float64(np.float32(v)) != v:
                return 2
    return code


@njit(cache=True, nogil=True)
def _count_csr(indptr: Any, indices: Any, data: Any, tblk: Any, need: Any, counts: Any) -> None:
    for i in range(indptr.shape[0] - 1):
        t = tblk[i]
        for k in range(indptr[i], indptr[i + 1]):
            if data[k] != 0.0:
                j = indices[k]
                if need[j, t]:
                    counts[j, t] += 1


@njit(cache=True, nogil=True)
def _fill_csr(
    indptr: Any, indices: Any, data: Any, order: Any, tblk: Any, need: Any, offsets: Any, out_idx: Any, out_val: Any
) -> None:
    K1 = need.shape[1]
    nxt = offsets[:-1].copy()
    for s in range(order.shape[0]):
        i = order[s]
        t = tblk[i]
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            if v != 0.0:
                j = indices[k]
                if need[j, t]:
                    q = j * K1 + t
                    pos = nxt[q]
                    nxt[q] = pos + 1
                    out_idx[pos] = s
                    out_val[pos] = v


@njit(cache=True, nogil=True)
def _count_dense(X: Any, tblk: Any, need: Any, counts: Any) -> None:
    for i in range(X.shape[0]):
        t = tblk[i]
        for j in range(X.shape[1]):
            if X[i, j] != 0.0 and need[j, t]:
                counts[j, t] += 1


@njit(cache=True, nogil=True)
def _fill_dense(X: Any, order: Any, tblk: Any, need: Any, offsets: Any, out_idx: Any, out_val: Any) -> None:
    K1 = need.shape[1]
    nxt = offsets[:-1].copy()
    for s in range(order.shape[0]):
        i = order[s]
        t = tblk[i]
        for j in range(X.shape[1]):
            v = X[i, j]
            if v != 0.0 and need[j, t]:
                q = j * K1 + t
                pos = nxt[q]
                nxt[q] = pos + 1
                out_idx[pos] = s
                out_val[pos] = v


@njit(cache=True, nogil=True)
def _logits(idx: Any, val: Any, lo: Any, hi: Any, nb: int, beta: Any, zf: Any, zs: Any) -> None:
    """z_f = (b + s_d)'x and z_s = b'x of every row (sorted order) at ``beta``."""
    zf[:] = 0.0
    zs[:] = 0.0
    for c in range(beta.shape[0]):
        bc = beta[c]
        if bc == 0.0:
            continue
        if c < nb:
            for k in range(lo[c], hi[c]):
                i = idx[k]
                d = val[k] * bc
                zf[i] += d
                zs[i] += d
        else:
            for k in range(lo[c], hi[c]):
                zf[idx[k]] += val[k] * bc


@njit(cache=True, nogil=True)
def _residuals(y: Any, a: Any, alpha: float, zf: Any, zs: Any, rf: Any, rs: Any, gf: Any, gt: Any, lrow: Any) -> float:
    """Residuals r = sigma(-y z), loss derivatives in z (gf: domain loss, gt: domain + shared loss), each row's
    weighted loss ``lrow``; returns the loss."""
    loss = 0.0
    for i in range(y.shape[0]):
        ai = a[i]
        if ai == 0.0:
            rf[i] = 0.0
            rs[i] = 0.0
            gf[i] = 0.0
            gt[i] = 0.0
            lrow[i] = 0.0
            continue
        yi = y[i]
        r1, l1 = _resid_loss(yi * zf[i])
        r2, l2 = _resid_loss(yi * zs[i])
        rf[i] = r1
        rs[i] = r2
        gf[i] = -ai * yi * r1
        gt[i] = gf[i] - alpha * ai * yi * r2
        lrow[i] = ai * (l1 + alpha * l2)
        loss += lrow[i]
    return loss


@njit(cache=True, nogil=True)
def _gradient(idx: Any, val: Any, lo: Any, hi: Any, nb: int, elig: Any, gf: Any, gt: Any, G: Any) -> None:
    for c in range(G.shape[0]):
        if not elig[c]:
            G[c] = 0.0
            continue
        acc = 0.0
        if c < nb:
            for k in range(lo[c], hi[c]):
                acc += val[k] * gt[idx[k]]
        else:
            for k in range(lo[c], hi[c]):
                acc += val[k] * gf[idx[k]]
        G[c] = acc


@njit(cache=True, nogil=True)
def _certificate(
    a: Any, alpha: float, rf: Any, rs: Any, loss: float, G: Any, beta: Any, lam: Any, elig: Any
) -> tuple[float, float, float]:
    """(objective, duality gap, largest KKT violation relative to lambda) at beta."""
    pen = 0.0
    bg = 0.0
    worst = 0.0
    kkt = 0.0
    for c in range(G.shape[0]):
        if not elig[c]:
            continue
        lc = lam[c]
        bc = beta[c]
        pen += lc * abs(bc)
        bg += bc * G[c]
        g = G[c]
        worst = max(worst, abs(g) / lc)
        if bc != 0.0:
            v = abs(g + lc * np.sign(bc)) / lc
        else:
            v = max(abs(g) - lc, 0.0) / lc
        kkt = max(kkt, v)
    primal = loss + pen
    # gap = primal - sum_i a_i [H(s r_f) + alpha H(s r_s)] with the dual point scaled by s into the feasible set.
    # At s = 1 it equals pen + beta'G exactly (H(sigma(-m)) = l(m) + m sigma(-m)); written so, it has no
    # cancellation of two sums of n terms, and the entropies are needed only for the part s < 1 adds.
    gap = pen + bg
    if worst > 1.0:
        s = 1.0 / worst
        for i in range(a.shape[0]):
            ai = a[i]
            if ai != 0.0:
                gap += ai * (_entropy(rf[i]) - _entropy(rf[i] * s) + alpha * (_entropy(rs[i]) - _entropy(rs[i] * s)))
    return primal, max(gap, 0.0), kkt


@njit(cache=True, nogil=True)
def _coordinate(
    idx: Any,
    val: Any,
    lo: Any,
    hi: Any,
    nb: int,
    c: int,
    cv: float,
    lam: Any,
    beta: Any,
    delta: Any,
    q: int,
    u: Any,
    v: Any,
    hf: Any,
    hs: Any,
) -> float:
    """One coordinate-descent update of coordinate c (working-set slot q) on the quadratic model; returns
    curvature x change^2."""
    old = beta[c] + delta[q]
    if cv <= 1e-300:  # no instance with positive weight has the feature: the loss does not depend on it
        new = 0.0
    else:
        grad = 0.0
        if c < nb:
            for k in range(lo[c], hi[c]):
                i = idx[k]
                grad += val[k] * (u[i] + v[i])
        else:
            for k in range(lo[c], hi[c]):
                grad += val[k] * u[idx[k]]
        tmp = old - grad / cv
        thr = lam[c] / cv
        if tmp > thr:
            new = tmp - thr
        elif tmp < -thr:
            new = tmp + thr
        else:
            new = 0.0
    d = new - old
    if d == 0.0:
        return 0.0
    delta[q] += d
    if c < nb:
        for k in range(lo[c], hi[c]):
            i = idx[k]
            xd = val[k] * d
            u[i] += hf[i] * xd
            v[i] += hs[i] * xd
    else:
        for k in range(lo[c], hi[c]):
            i = idx[k]
            u[i] += hf[i] * val[k] * d
    return cv * d * d


@njit(cache=True, nogil=True)
def _cd_inner(
    idx: Any,
    val: Any,
    lo: Any,
    hi: Any,
    nb: int,
    ws: Any,
    lam: Any,
    beta: Any,
    hf: Any,
    hs: Any,
    u: Any,
    v: Any,
    delta: Any,
    curv: Any,
    act: Any,
) -> None:
    """The working set's quadratic model by cyclic passes over the coordinates' entries (u, v: the model's
    derivatives per row, kept up to date); between full passes, over its non-zeros only (glmnet's active set)."""
    for q in range(ws.shape[0]):
        c = ws[q]
        acc = 0.0
        if c < nb:
            for k in range(lo[c], hi[c]):
                i = idx[k]
                x = val[k]
                acc += x * x * (hf[i] + hs[i])
        else:
            for k in range(lo[c], hi[c]):
                x = val[k]
                acc += x * x * hf[idx[k]]
        curv[q] = acc
        delta[q] = 0.0
    first = -1.0
    full = True
    n_act = 0
    for _ in range(_INNER_MAX):
        maxchg = 0.0
        n_sweep = ws.shape[0] if full else n_act
        for r in range(n_sweep):
            q = r if full else act[r]
            chg = _coordinate(idx, val, lo, hi, nb, ws[q], curv[q], lam, beta, delta, q, u, v, hf, hs)
            if chg > maxchg:
                maxchg = chg
        if full:
            n_act = 0
            for q in range(ws.shape[0]):
                if beta[ws[q]] + delta[q] != 0.0:
                    act[n_act] = q
                    n_act += 1
        if first < 0.0:
            first = maxchg
        if maxchg <= _INNER_REL * first:
            if full:
                break
            full = True
        else:
            full = False


@njit(cache=True, nogil=True)
def _gram_inner(
    idx: Any,
    val: Any,
    lo: Any,
    hi: Any,
    nb: int,
    ws: Any,
    lam: Any,
    beta: Any,
    gf: Any,
    gt: Any,
    hf: Any,
    hs: Any,
    tmp_f: Any,
    tmp_t: Any,
    delta: Any,
) -> None:
    """The working set's quadratic model solved on its Gram matrix H (k x k): coordinate descent in O(k) per update
    instead of a pass over the coordinate's entries. H[c, d] = sum_i x_ic x_id w_i with w = hf + hs between two
    shared weights and w = hf otherwise (zero between two domains' deviations: no common rows)."""
    k = ws.shape[0]
    H = np.zeros((k, k))
    g = np.zeros(k)
    for q in range(k):
        c = ws[q]
        acc = 0.0
        for e in range(lo[c], hi[c]):
            i = idx[e]
            x = val[e]
            tmp_f[i] = x * hf[i]
            tmp_t[i] = x * (hf[i] + hs[i]) if c < nb else tmp_f[i]
            acc += x * (gt[i] if c < nb else gf[i])
        g[q] = acc
        for r in range(q, k):
            d = ws[r]
            tmp = tmp_t if (c < nb and d < nb) else tmp_f
            h = 0.0
            for e in range(lo[d], hi[d]):
                h += val[e] * tmp[idx[e]]
            H[q, r] = h
            H[r, q] = h
        for e in range(lo[c], hi[c]):
            i = idx[e]
            tmp_f[i] = 0.0
            tmp_t[i] = 0.0
    hd = np.zeros(k)  # H @ delta
    for q in range(k):
        delta[q] = 0.0
    first = -1.0
    for _ in range(20 * _INNER_MAX):
        maxchg = 0.0
        for q in range(k):
            c = ws[q]
            cv = H[q, q]
            old = beta[c] + delta[q]
            if cv <= 1e-300:
                new = 0.0
            else:
                tmp = old - (g[q] + hd[q]) / cv
                thr = lam[c] / cv
                if tmp > thr:
                    new = tmp - thr
                elif tmp < -thr:
                    new = tmp + thr
                else:
                    new = 0.0
            d = new - old
            if d != 0.0:
                delta[q] += d
                for r in range(k):
                    hd[r] += H[r, q] * d
                chg = cv * d * d
                if chg > maxchg:
                    maxchg = chg
        if first < 0.0:
            first = maxchg
        if maxchg <= _GRAM_REL * first:
            break


@njit(cache=True, nogil=True)
def _newton_step(
    idx: Any,
    val: Any,
    lo: Any,
    hi: Any,
    nb: int,
    ws: Any,
    y: Any,
    a: Any,
    alpha: float,
    lam: Any,
    beta: Any,
    zf: Any,
    zs: Any,
    rf: Any,
    rs: Any,
    gf: Any,
    gt: Any,
    loss: float,
    lrow: Any,
    buf: Any,
    delta: Any,
    curv: Any,
    act: Any,
) -> tuple[float, float, int]:
    """One proximal Newton step on the coordinates ``ws``; updates beta, zf, zs in place.

    Returns (new loss, the model decrease D (<= 0), status: 0 step taken, 1 no descent direction, 2 line search
    failed)."""
    n = y.shape[0]
    hf = buf[0]
    hs = buf[1]
    u = buf[2]
    v = buf[3]
    dzf = buf[4]
    dzs = buf[5]
    n_ws = ws.shape[0]
    entries = 0
    for q in range(n_ws):
        entries += hi[ws[q]] - lo[ws[q]]
    # the Gram matrix costs k scatters and k^2 / 2 gathers of a coordinate's entries, a pass two gathers of each
    gram = n_ws <= _GRAM_MAX and (n_ws * (entries // 2 + n_ws) + 2 * entries) < _GRAM_PASSES * 2 * entries
    for i in range(n):
        ai = a[i]
        if ai == 0.0:
            hf[i] = 0.0
            hs[i] = 0.0
        else:
            hf[i] = ai * rf[i] * (1.0 - rf[i])
            hs[i] = alpha * ai * rs[i] * (1.0 - rs[i])
        if gram or ai == 0.0:  # scratch rows of the Gram build / the model's derivatives per row
            u[i] = 0.0
            v[i] = 0.0
        else:
            u[i] = gf[i]
            v[i] = gt[i] - gf[i]
    if gram:
        _gram_inner(idx, val, lo, hi, nb, ws, lam, beta, gf, gt, hf, hs, u, v, delta)
    else:
        _cd_inner(idx, val, lo, hi, nb, ws, lam, beta, hf, hs, u, v, delta, curv, act)
    dzf[:] = 0.0
    dzs[:] = 0.0
    dpen = 0.0
    for q in range(ws.shape[0]):
        c = ws[q]
        d = delta[q]
        dpen += lam[c] * (abs(beta[c] + d) - abs(beta[c]))
        if d == 0.0:
            continue
        if c < nb:
            for k in range(lo[c], hi[c]):
                i = idx[k]
                xd = val[k] * d
                dzf[i] += xd
                dzs[i] += xd
        else:
            for k in range(lo[c], hi[c]):
                dzf[idx[k]] += val[k] * d
    D = dpen
    for i in range(n):
        D += gf[i] * dzf[i] + (gt[i] - gf[i]) * dzs[i]
    if not D < 0.0:
        return loss, 0.0, 1
    # Armijo on the change of the objective, summed row by row (the difference of two sums of n terms near the
    # optimum is below their rounding error)
    rfn = buf[6]
    rsn = buf[7]
    lnew = buf[8]
    t = 1.0
    while True:
        dl = 0.0
        for i in range(n):
            ai = a[i]
            if ai != 0.0 and (dzf[i] != 0.0 or dzs[i] != 0.0):
                yi = y[i]
                r1, l1 = _resid_loss(yi * (zf[i] + t * dzf[i]))
                r2, l2 = _resid_loss(yi * (zs[i] + t * dzs[i]))
                rfn[i] = r1
                rsn[i] = r2
                lnew[i] = ai * (l1 + alpha * l2)
                dl += lnew[i] - lrow[i]
        dp = 0.0
        for q in range(ws.shape[0]):
            c = ws[q]
            dp += lam[c] * (abs(beta[c] + t * delta[q]) - abs(beta[c]))
        if dl + dp <= _ARMIJO * t * D:
            break
        t *= 0.5
        if t < 1e-12:
            return loss, D, 2
    for q in range(ws.shape[0]):
        c = ws[q]
        nb_c = beta[c] + t * delta[q]
        if delta[q] != 0.0 and abs(nb_c) < 1e-300:
            nb_c = 0.0
        beta[c] = nb_c
    # the accepted point's residuals and loss come from the line search
    loss = 0.0
    for i in range(n):
        zf[i] += t * dzf[i]
        zs[i] += t * dzs[i]
        ai = a[i]
        if ai != 0.0 and (dzf[i] != 0.0 or dzs[i] != 0.0):
            yi = y[i]
            rf[i] = rfn[i]
            rs[i] = rsn[i]
            lrow[i] = lnew[i]
            gf[i] = -ai * yi * rfn[i]
            gt[i] = gf[i] - alpha * ai * yi * rsn[i]
        loss += lrow[i]
    return loss, t * D, 0


@njit(cache=True, nogil=True)
def _solve(
    idx: Any,
    val: Any,
    lo: Any,
    hi: Any,
    nb: int,
    elig: Any,
    y: Any,
    a: Any,
    alpha: float,
    lam: Any,
    beta: Any,
    ws_in: Any,
    tol_rel: float,
    max_iter: int,
    G: Any,
    zf: Any,
    zs: Any,
) -> tuple[int, float, float, float, int, int]:
    """Minimise Eq. 1 from ``beta`` (in place). ``ws_in``: initial working set (bool, or none set: the top
    violators). Fills G (gradient), zf, zs (logits); returns (Newton steps, objective, gap, KKT violation, final
    working-set size, rounds)."""
    n = y.shape[0]
    m = beta.shape[0]
    rf = np.empty(n)
    rs = np.empty(n)
    gf = np.empty(n)
    gt = np.empty(n)
    lrow = np.empty(n)
    buf = np.empty((9, n))
    inws = np.zeros(m, dtype=np.bool_)
    for c in range(m):
        if not elig[c]:
            beta[c] = 0.0
        elif ws_in[c] or beta[c] != 0.0:
            inws[c] = True
    _logits(idx, val, lo, hi, nb, beta, zf, zs)
    loss = _residuals(y, a, alpha, zf, zs, rf, rs, gf, gt, lrow)
    n_steps = 0
    rounds = 0
    primal = 0.0
    gap = 0.0
    kkt = 0.0
    while True:
        _gradient(idx, val, lo, hi, nb, elig, gf, gt, G)
        primal, gap, kkt = _certificate(a, alpha, rf, rs, loss, G, beta, lam, elig)
        if gap <= tol_rel * primal or n_steps >= max_iter or rounds >= _MAX_ROUNDS:
            break
        rounds += 1
        # grow the working set by the worst violators (at most doubling it)
        nws = 0
        nviol = 0
        for c in range(m):
            if inws[c]:
                nws += 1
            elif elig[c] and abs(G[c]) > lam[c]:
                nviol += 1
        if nviol > 0:
            cand = np.empty(nviol, dtype=np.int64)
            score = np.empty(nviol)
            q = 0
            for c in range(m):
                if not inws[c] and elig[c] and abs(G[c]) > lam[c]:
                    cand[q] = c
                    score[q] = -abs(G[c]) / lam[c]
                    q += 1
            n_add = max(_MIN_WS, nws)
            if nviol > n_add:
                cand = cand[np.argsort(score, kind="mergesort")[:n_add]]
            inws[cand] = True
        ws = np.flatnonzero(inws)
        if ws.shape[0] == 0:
            break
        delta = np.empty(ws.shape[0])
        curv = np.empty(ws.shape[0])
        act = np.empty(ws.shape[0], dtype=np.int64)
        # the working-set problem to a fraction of the current gap (a tenth of the target once it is complete)
        target = max(0.1 * tol_rel * primal, (1e-3 if nviol == 0 else 0.1) * gap)
        while n_steps < max_iter:
            loss, D, status = _newton_step(
                idx,
                val,
                lo,
                hi,
                nb,
                ws,
                y,
                a,
                alpha,
                lam,
                beta,
                zf,
                zs,
                rf,
                rs,
                gf,
                gt,
                loss,
                lrow,
                buf,
                delta,
                curv,
                act,
            )
            n_steps += 1
            if status != 0 or -D <= target:
                break
    nws = 0
    for c in range(m):
        if inws[c]:
            nws += 1
    return n_steps, primal, gap, kkt, nws, rounds


# ------------------------------------------------------------------------------------------------ design
def _index_dtype(n: int) -> type[np.signedinteger[Any]]:
    return np.int32 if n < 2**31 - 1 else np.int64


_VALUE_DTYPES = (np.int8, np.float32, np.float64)


class DomainDesign(BlockLayout):
    """X stored once by column and domain block, the solver of Eq. 1 on it (see the module docstring).

    Same interface as :class:`py_models._augment.AugmentedDesign` (``solve``, ``unpack``, ``penalties``, the column
    bookkeeping), plus :meth:`view` (another alpha, or the pooled model, on the same stored data) and
    :meth:`gradient`. ``solve`` picks instances by weight (0 = left out: CV folds, bootstrap resamples).
    """

    def __init__(
        self,
        X: Any,
        y_pm: NDArray[np.float64],
        dom_idx: NDArray[np.intp],
        shared_cols: NDArray[np.intp],
        domain_cols: Sequence[NDArray[np.intp]],
        alpha: float,
        shared_penalty_factor: NDArray[np.float64] | None = None,
    ) -> None:
        n, p = X.shape
        self.n, self.p, self.alpha, self.pooled = int(n), int(p), float(alpha), False
        self.y_pm = np.asarray(y_pm, dtype=np.float64)
        self.dom_idx = np.asarray(dom_idx, dtype=np.intp)
        widths = self._set_layout(shared_cols, domain_cols, shared_penalty_factor)
        K = len(self.domain_cols)

        # rows grouped by block (0: no weights of their own, k + 1: weighted domain k), stable
        tblk = (self.dom_idx + 1).astype(np.int64)
        order = np.argsort(tblk, kind="stable")
        self.row_pos = np.empty(n, dtype=np.int64)  # original row -> stored (sorted) position
        self.row_pos[order] = np.arange(n)
        K1 = K + 1
        need = np.zeros((p, K1), dtype=np.bool_)
        need[self.shared_cols, :] = True
        for k, cols in enumerate(self.domain_cols):
            need[cols, k + 1] = True
        counts = np.zeros((p, K1), dtype=np.int64)
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            data = np.asarray(X.data, dtype=np.float64)
            code = _value_code_1d(data) if data.size else 0
            _count_csr(X.indptr, X.indices, data, tblk, need, counts)
        else:
            X = np.ascontiguousarray(X, dtype=np.float64)  # one layout: one compiled kernel
            code = _value_code_2d(X) if X.size else 0
            _count_dense(X, tblk, need, counts)
        offsets = np.zeros(p * K1 + 1, dtype=np.int64)
        np.cumsum(counts.ravel(), out=offsets[1:])
        nnz = int(offsets[-1])
        self.indices = np.empty(nnz, dtype=_index_dtype(n))
        self.values = np.empty(nnz, dtype=_VALUE_DTYPES[code])
        if sp.issparse(X):
            _fill_csr(X.indptr, X.indices, data, order, tblk, need, offsets, self.indices, self.values)
        else:
            _fill_dense(X, order, tblk, need, offsets, self.indices, self.values)
        # entry range of every coordinate: the whole column for b_j, block k + 1's part for s_kj
        lo = np.empty(self.width, dtype=np.int64)
        hi = np.empty(self.width, dtype=np.int64)
        sc = self.shared_cols
        lo[: widths[0]] = offsets[sc * K1]
        hi[: widths[0]] = offsets[(sc + 1) * K1]
        for k, cols in enumerate(self.domain_cols):
            s0, s1 = self.starts[k + 1], self.starts[k + 2]
            lo[s0:s1] = offsets[cols * K1 + k + 1]
            hi[s0:s1] = offsets[cols * K1 + k + 2]
        self.lo, self.hi = lo, hi
        self.y_sorted = np.ascontiguousarray(self.y_pm[order])
        self.order = order

    @property
    def nbytes(self) -> int:
        """Memory held by the stored design (entries, ranges, row bookkeeping)."""
        arrays = (self.indices, self.values, self.lo, self.hi, self.row_pos, self.order, self.y_sorted)
        return int(sum(a.nbytes for a in arrays))

    def view(self, alpha: float | None = None, pooled: bool | None = None) -> DomainDesign:
        """The same stored data at another ``alpha``, or ``pooled`` (every s_d fixed at 0), without a copy."""
        other = object.__new__(DomainDesign)
        other.__dict__.update(self.__dict__)
        if alpha is not None:
            other.alpha = float(alpha)
        if pooled is not None:
            other.pooled = bool(pooled)
        return other

    def penalties(self, lambda_shared: float, lambda_domain: float) -> NDArray[np.float64]:
        lam = np.full(self.width, float(lambda_domain))
        lam[: self.n_shared_cols] = float(lambda_shared) * self.shared_penalty_factor
        return lam

    def eligible(self) -> NDArray[np.bool_]:
        elig = np.ones(self.width, dtype=bool)
        if self.pooled:
            elig[self.n_shared_cols :] = False
        return elig

    def _weights(self, w_inst: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        w = np.asarray(w_inst, dtype=np.float64)
        N = float(w.sum())
        return np.ascontiguousarray(w[self.order] / N), N

    def solve(
        self,
        lambda_shared: float,
        lambda_domain: float,
        w_inst: NDArray[np.float64],
        *,
        warm: dict[str, Any] | None = None,
        tol: float = 1e-6,
        max_iter: int = 1000,
        kkt_tol: float = 1e-3,
        sub: Any = None,
        eligible: NDArray[np.bool_] | None = None,
    ) -> dict[str, Any]:
        """Minimise mean-normalised Eq. 1 on the instances with positive weight (``w_inst``, original row order).

        ``warm``: a previous result on this design (another grid point, the full fit of a bootstrap): its beta is
        the start and its gradient screens the first working set with the sequential strong rule
        |g_j| >= 2 lambda_j - lambda_j_prev (plus its non-zeros); later rounds add any coordinate that violates the
        KKT conditions, so the optimum is that of a cold solve. ``kkt_tol`` and ``sub`` are accepted for the
        interface of ``AugmentedDesign.solve`` and unused. The result also holds ``z``: every row's logit
        (b + s_d)'x (b'x for a domain without weights or the pooled model), rows with zero weight included.
        ``eligible`` (bool per coordinate): only these may be non-zero, the others are fixed at 0 (the baselines'
        per-domain fits leave a domain whose training rows have one class at zero, as liblinear's wrapper does).
        """
        del kkt_tol, sub
        lam = self.penalties(lambda_shared, lambda_domain)
        a, _ = self._weights(w_inst)
        elig = self.eligible()
        if eligible is not None:
            elig &= np.asarray(eligible, dtype=bool)
        beta = np.zeros(self.width)
        ws = np.zeros(self.width, dtype=bool)
        if warm is not None and len(warm.get("beta", ())) == self.width:
            beta = np.where(elig, np.asarray(warm["beta"], dtype=np.float64), 0.0)
            if "gradient" in warm and "lam" in warm:
                ws = np.abs(warm["gradient"]) >= 2.0 * lam - warm["lam"]
        pos = a > 0
        G = np.zeros(self.width)
        zf = np.zeros(self.n)
        zs = np.zeros(self.n)
        y_pos = self.y_sorted[pos]
        if self.width == 0 or not len(y_pos) or y_pos.min() == y_pos.max():  # one class: all zero, as liblinear's
            beta[:] = 0.0
            d = self.diagnostics_at(beta, w_inst, lambda_shared, lambda_domain)
            G[elig] = d["gradient"][elig]
            steps, primal, gap, kkt, nws, rounds = 0, d["objective"], d["duality_gap"], d["kkt_violation"], 0, 0
        else:
            steps, primal, gap, kkt, nws, rounds = _solve(
                self.indices,
                self.values,
                self.lo,
                self.hi,
                self.n_shared_cols,
                elig,
                self.y_sorted,
                a,
                self.alpha,
                lam,
                beta,
                ws,
                float(tol) * GAP_FACTOR,
                int(max_iter),
                G,
                zf,
                zs,
            )
        return {
            "objective": float(primal),
            "gradient": G,
            "kkt_violation": float(kkt),
            "duality_gap": float(gap),
            "beta": beta,
            "n_iter": int(rounds + 1),
            "n_newton": int(steps),
            "n_screened": int(elig.sum() - nws),
            "lam": lam,
            "z": zf[self.row_pos],
        }

    def diagnostics_at(
        self, beta: NDArray[np.float64], w_inst: NDArray[np.float64], lambda_shared: float, lambda_domain: float
    ) -> dict[str, Any]:
        """Objective, gradient (every coordinate, the frozen s of a pooled view too), KKT violation and duality
        gap at ``beta``, as ``AugmentedDesign.diagnostics``."""
        lam = self.penalties(lambda_shared, lambda_domain)
        a, _ = self._weights(w_inst)
        G = np.zeros(self.width)
        zf, zs = np.zeros(self.n), np.zeros(self.n)
        beta = np.asarray(beta, dtype=np.float64)
        all_cols = np.ones(self.width, dtype=bool)
        n = self.n
        rf, rs, gf, gt = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        _logits(self.indices, self.values, self.lo, self.hi, self.n_shared_cols, beta, zf, zs)
        loss = _residuals(self.y_sorted, a, self.alpha, zf, zs, rf, rs, gf, gt, np.empty(n))
        _gradient(self.indices, self.values, self.lo, self.hi, self.n_shared_cols, all_cols, gf, gt, G)
        primal, gap, kkt = (
            _certificate(a, self.alpha, rf, rs, loss, G, beta, lam, self.eligible()) if self.width else (loss, 0.0, 0.0)
        )
        return {"objective": float(primal), "gradient": G, "kkt_violation": float(kkt), "duality_gap": float(gap)}

    def unpack(
        self, beta: NDArray[np.float64], n_domains_total: int, weighted_rows: NDArray[np.intp]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """beta -> (b (p,), S (n_domains_total, p)); ``weighted_rows[k]`` is the S row of block k."""
        b = np.zeros(self.p)
        S = np.zeros((n_domains_total, self.p))
        b[self.shared_cols] = beta[: self.n_shared_cols]
        for k, cols in enumerate(self.domain_cols):
            S[weighted_rows[k], cols] = beta[self.starts[k + 1] : self.starts[k + 2]]
        return b, S
