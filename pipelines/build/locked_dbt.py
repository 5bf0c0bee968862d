"""dbt by hand on the build file, under the build lock: ``python -m pipelines.build.locked_dbt <dbt command>``.

For the dbt commands an operator runs outside a build (``make docs`` runs ``docs generate``; ``test`` re-runs the
invariants). Like every command that opens the build file, it takes the build lock first and checks that no other
process holds the file (:func:`pipelines.core.lock.connect_build_db`): while a build runs it exits 3 with
``preflens: build already running ...``, before dbt starts, so it never makes a build fail on DuckDB's file lock or
overwrites the build's dbt artifacts in ``<warehouse>/dbt_target``. dbt gets the paths a build gives it
(:func:`pipelines.build.dbt_runner.dbt_command`, run in the warehouse folder) and runs tied to this process
(:mod:`pipelines.build.tied_process`), so it never outlives the lock. Its output is dbt's own.

    python -m pipelines.build.locked_dbt [--warehouse DIR] docs generate
    python -m pipelines.build.locked_dbt test --vars '{annotator: offline}'
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.build.dbt_runner import dbt_command, dbt_cwd, dbt_env
from pipelines.build.tied_process import start_tied, stop_tied
from pipelines.core.config import DEFAULT_WAREHOUSE_HELP, Paths, default_paths
from pipelines.core.lock import BuildAlreadyRunning, BuildLock, connect_build_db

#: the build id dbt sees (``PREFLENS_BUILD_ID``) when run by hand: no build record is written
MANUAL_BUILD_ID = "manual"


def run_locked_dbt(args: Sequence[str], paths: Paths) -> int:
    """Run ``dbt <args>`` on ``paths.build_db`` under the build lock; dbt's exit code.

    Raises :class:`~pipelines.core.lock.BuildAlreadyRunning` (before dbt starts) when the lock is held or another
    process has the build file open, and :class:`FileNotFoundError` when there is no build file.
    """
    if not paths.build_db.exists():
        raise FileNotFoundError(f"no build warehouse at {paths.build_db}; run `preflens run` first")
    with BuildLock(paths.lock_file):
        connect_build_db(paths.build_db, read_only=True).close()  # held by another process: BuildAlreadyRunning
        paths.dbt_target_dir.mkdir(parents=True, exist_ok=True)
        proc = start_tied(
            dbt_command(args, paths),
            cwd=dbt_cwd(paths),
            env=dbt_env(paths, MANUAL_BUILD_ID),
            stdin=subprocess.DEVNULL,
        )
        try:
            return proc.wait()
        finally:  # Ctrl-C or an error here: dbt goes too, before the lock is released
            stop_tied(proc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.build.locked_dbt",
        description="Run a dbt command on the build file under the build lock (exit 3 while a build runs).",
    )
    parser.add_argument("--warehouse", metavar="DIR", type=Path, help=DEFAULT_WAREHOUSE_HELP)
    parser.add_argument("dbt_args", nargs=argparse.REMAINDER, metavar="DBT_ARGS", help="e.g. docs generate")
    args = parser.parse_args(argv)
    if not args.dbt_args:
        parser.error("give the dbt command to run, e.g. docs generate")
    paths = Paths(warehouse=args.warehouse.resolve()) if args.warehouse else default_paths()
    try:
        return run_locked_dbt(args.dbt_args, paths)
    except BuildAlreadyRunning as exc:
        print(f"preflens: {exc}", file=sys.stderr)
        return 3
    except FileNotFoundError as exc:
        print(f"preflens: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
