"""A small real fixture: the bundled sample's pairs of two judges (681 pairs, 15 domains), for builds whose subject
is the pipeline around the fit (settings, crashes, locks), not the fit on the whole sample."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pipelines.core.config import SAMPLE_PATH

SUBSET_MECHANISMS = ("judge:gpt-3.5-turbo", "judge:gpt-4")


def write_sample_subset(path: Path, mechanisms: tuple[str, ...] = SUBSET_MECHANISMS) -> int:
    """Write the sample's rows of ``mechanisms`` to ``path`` (canonical JSONL); returns the number of rows."""
    n = 0
    with gzip.open(SAMPLE_PATH, "rt", encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        for line in src:
            if json.loads(line)["mechanism"] in mechanisms:
                out.write(line if line.endswith("\n") else line + "\n")
                n += 1
    return n
