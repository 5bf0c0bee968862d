"""`preflens evaluate` opens the build database only under the build lock (issue 11, item 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core.config import Paths
from pipelines.core.lock import BuildAlreadyRunning
from pipelines.evaluate.runner import run_evaluation

HOLDER = """
import sys, time
from pathlib import Path
from pipelines.core.lock import BuildLock
with BuildLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_run_evaluation_never_opens_the_build_file_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    """Another process (a build) holds the lock: the evaluation stops with BuildAlreadyRunning (exit 3 in the CLI)
    before it opens, creates or reads the build database, and it never relies on its caller to hold the lock."""
    paths = Paths(warehouse=tmp_path / "warehouse")
    paths.warehouse.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(paths.lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BuildAlreadyRunning, match="build already running"):
            run_evaluation(paths, n_splits=1, n_seeds=1, n_jobs=1, build_marts=False, progress=None)
        assert not paths.build_db.exists()  # never opened (DuckDB would have created it)
    finally:
        holder.kill()
        holder.wait()
