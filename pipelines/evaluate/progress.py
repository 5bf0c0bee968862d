"""Progress of `preflens evaluate`: plain lines (never wrapped, no markup), one per finished mechanism and variant.

Lines go to a writer (stderr by default), so they read the same in a terminal and in a cron log. Names from the
data are printed as they are.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence

from py_models.eval_protocols import EvalUnit

__all__ = ["EvalProgress", "stderr_line"]

GroupKey = tuple[str, str, str]  # representation, mechanism, variant
#: a line at least this often while nothing else finishes (seconds)
HEARTBEAT_S = 20.0


def stderr_line(line: str) -> None:
    """Write one progress line to stderr and flush it."""
    print(line, file=sys.stderr, flush=True)


class EvalProgress:
    """Counts the units left per (representation, mechanism, variant); a line when one has none left."""

    def __init__(
        self, units: Sequence[EvalUnit], todo: Iterable[EvalUnit], write: Callable[[str], None] = stderr_line
    ) -> None:
        self.write = write
        self.t0 = time.perf_counter()
        self._last_line = self.t0
        self.left: Counter[GroupKey] = Counter()
        self.runs: dict[GroupKey, Counter[str]] = defaultdict(Counter)
        self.seconds: defaultdict[GroupKey, float] = defaultdict(float)
        self.cpu: defaultdict[GroupKey, float] = defaultdict(float)
        #: CPU seconds per (representation, variant group): each unit counted once (the profile of the run)
        self.cpu_by_group: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.not_converged: Counter[str] = Counter()  # per variant: fits stopped at their iteration limit
        for u in units:
            for v in u.variants:
                self.runs[(u.representation, u.mechanism, v)][u.protocol] += 1
        self.todo = list(todo)
        for u in self.todo:
            for v in u.variants:
                self.left[(u.representation, u.mechanism, v)] += 1
        self.n_groups = len(self.runs)
        self.n_done_groups = self.n_groups - len(self.left)
        self.n_units, self.n_todo, self.n_run = len(units), len(self.todo), 0

    def start(
        self, eval_id: str, n_mechanisms: int, representations: Sequence[str], n_jobs: int, resumed: bool
    ) -> None:
        before = self.n_units - self.n_todo
        how = f"resumed, {before:,} of {self.n_units:,} units done before" if resumed else f"{self.n_units:,} units"
        self.write(
            f"evaluate {eval_id}: {n_mechanisms} mechanism(s) x {len(representations)} representation(s) "
            f"({', '.join(representations)}), {how}; {self.n_todo:,} to run on {n_jobs} process(es)"
        )

    def unit_done(
        self, unit: EvalUnit, seconds: float, n_not_converged: int = 0, cpu_seconds: float | None = None
    ) -> None:
        """Count ``unit`` (``seconds`` wall, ``cpu_seconds`` CPU, default the wall seconds); a line for each of its
        variants that is now complete (or a heartbeat now and then)."""
        cpu = seconds if cpu_seconds is None else cpu_seconds
        self.n_run += 1
        self.cpu_by_group[(unit.representation, "+".join(unit.variants))] += cpu
        if n_not_converged:
            self.not_converged[unit.variants[0]] += n_not_converged
        wrote = False
        for v in unit.variants:
            key = (unit.representation, unit.mechanism, v)
            self.seconds[key] += seconds
            self.cpu[key] += cpu
            self.left[key] -= 1
            if self.left[key] <= 0:
                del self.left[key]
                self.n_done_groups += 1
                self.write(self._group_line(key))
                wrote = True
        now = time.perf_counter()
        if wrote:
            self._last_line = now
        elif now - self._last_line >= HEARTBEAT_S:
            self._last_line = now
            self.write(f"  ... {self.n_run:,}/{self.n_todo:,} units run, {now - self.t0:.0f}s elapsed")

    def _group_line(self, key: GroupKey) -> str:
        rep, mech, variant = key
        runs = self.runs[key]
        parts = [f"{runs['in_domain']} in-domain splits"] if runs["in_domain"] else []
        parts += [f"{runs['ood']} OOD runs"] if runs["ood"] else []
        width = len(str(self.n_groups))
        return (
            f"[{self.n_done_groups:>{width}}/{self.n_groups}] {rep} {mech} {variant}: {', '.join(parts) or 'no runs'}, "
            f"{self.seconds[key]:.1f}s of fits ({self.cpu[key]:.1f}s CPU), {time.perf_counter() - self.t0:.0f}s elapsed"
        )

    def finish(self, n_rows: int) -> None:
        self.write(f"evaluate: {self.n_run:,} units run, {n_rows:,} result rows, {time.perf_counter() - self.t0:.1f}s")
        for line in self.cpu_lines():
            self.write(line)
        if self.not_converged:
            where = ", ".join(f"{v} {n:,}" for v, n in self.not_converged.most_common())
            self.write(f"  fits that stopped at their iteration limit (scikit-learn ConvergenceWarning): {where}")

    def cpu_lines(self) -> list[str]:
        """The CPU seconds of this run's fits per representation and variant group (costliest first), one line
        per representation: where an evaluation spends its time, whatever the load."""
        reps = sorted({r for r, _ in self.cpu_by_group})
        lines = []
        for rep in reps:
            groups = sorted(((g, s) for (r, g), s in self.cpu_by_group.items() if r == rep), key=lambda t: -t[1])
            total = sum(s for _, s in groups)
            parts = ", ".join(f"{g} {s:.1f}" for g, s in groups)
            lines.append(f"  CPU seconds of fits, {rep}: {total:.1f} ({parts})")
        return lines
