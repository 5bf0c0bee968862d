"""Shared types of the ingest stage: errors, issues, summaries and the canonical record layout."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MECHANISM_TYPES: tuple[str, ...] = ("human", "judge", "reward")
WINNERS: tuple[str, ...] = ("a", "b", "tie")
DEFAULT_DOMAIN = "general"
RAW_TEXT_LIMIT = 4000

#: Columns every adapter produces (all String except ``_line``). ``_reason`` is set on rows to quarantine.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "prompt",
    "response_a",
    "response_b",
    "winner",
    "domain",
    "domain_source",
    "mechanism",
    "mechanism_type",
    "source",
    "source_item_id",
    "source_pair_id",
    "model_a",
    "model_b",
    "protocol",
)
#: ``prompt`` is not required: a pair without one (AnnotatedPairs ``prompt: null``, a CSV without a prompt column) is
#: stored with ``raw.items.prompt`` NULL, never as an invented text. A prompt that is present but blank is quarantined.
REQUIRED_COLUMNS: tuple[str, ...] = ("response_a", "response_b", "winner", "mechanism", "mechanism_type")


#: ``raw.ingest_runs.status``: ``running`` until the run ends; a row whose process died is closed ``interrupted`` by
#: the next ingest or build that holds the build lock (pipelines/ingest/runs.py)
RUN_RUNNING = "running"
RUN_COMPLETED = "completed"
RUN_WARNINGS = "completed_with_warnings"  # every file loaded; some warned (e.g. a truncated gzip stream)
RUN_FAILED = "failed"  # at least one file failed (the others are committed), or an unexpected error stopped it
RUN_INTERRUPTED = "interrupted"  # Ctrl-C (the files before the current one are committed), or a dead process


class IngestError(Exception):
    """A fatal ingest problem (missing file, undetectable format, bad arguments, unreadable file, file without usable
    rows), in plain words.

    ``summary`` holds what was done before the failure, when anything was.
    """

    def __init__(self, message: str, summary: IngestSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class Issue:
    """One input record that cannot be loaded: where it is, why, and its text."""

    line: int
    reason: str
    raw_text: str | None = None


@dataclass
class FileSummary:
    """Counts for one ingested file. ``rows_read == loaded + duplicates + quarantined + skipped + unlabelled +
    annotations + annotation_duplicates``.

    A row is one verdict (loaded as a ``raw.labels`` row) or, for AnnotatedPairs ``principle`` annotators, one concept
    annotation (``annotations``: new ``raw.annotations`` cells; ``annotation_duplicates``: the same value already
    stored), or, when unlabelled pairs are allowed (`preflens score`), a pair without a verdict (``unlabelled``: an
    item with no label row; 0 for `preflens ingest`, where a missing winner is quarantined).

    ``error`` says why the file failed: either it could not be read (``committed`` is False and nothing of it was
    written), or it had no usable row (its quarantine rows are committed). ``warnings`` are problems that did not
    stop the file (a truncated gzip stream).
    """

    path: str
    format: str
    committed: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0
    unlabelled: int = 0
    annotations: int = 0
    annotation_duplicates: int = 0
    new_items: int = 0
    new_domains: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    skip_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def usable(self) -> int:
        """Rows that were loaded or were already present (verdicts, unlabelled pairs and concept annotations)."""
        return self.loaded + self.duplicates + self.unlabelled + self.annotations + self.annotation_duplicates

    def reconciles(self) -> bool:
        done = self.loaded + self.duplicates + self.quarantined + self.skipped + self.unlabelled
        return self.rows_read == done + self.annotations + self.annotation_duplicates


@dataclass
class IngestSummary:
    """The result of one :func:`ingest_paths` call (one ``raw.ingest_runs`` row)."""

    ingest_id: str
    files: list[FileSummary] = field(default_factory=list)

    def _total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def rows_read(self) -> int:
        return self._total("rows_read")

    @property
    def loaded(self) -> int:
        return self._total("loaded")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")

    @property
    def quarantined(self) -> int:
        return self._total("quarantined")

    @property
    def skipped(self) -> int:
        return self._total("skipped")

    @property
    def unlabelled(self) -> int:
        return self._total("unlabelled")

    @property
    def annotations(self) -> int:
        return self._total("annotations")

    @property
    def annotation_duplicates(self) -> int:
        return self._total("annotation_duplicates")

    @property
    def new_items(self) -> int:
        return self._total("new_items")

    @property
    def new_domains(self) -> int:
        return self._total("new_domains")

    @property
    def quarantine_reasons(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.files:
            out.update(f.quarantine_reasons)
        return out

    @property
    def skip_reasons(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.files:
            out.update(f.skip_reasons)
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json`` output or logs)."""
        keys = (
            "rows_read",
            "loaded",
            "duplicates",
            "quarantined",
            "skipped",
            "unlabelled",
            "annotations",
            "annotation_duplicates",
            "new_items",
            "new_domains",
        )
        return {
            "ingest_id": self.ingest_id,
            **{k: getattr(self, k) for k in keys},
            "quarantine_reasons": dict(self.quarantine_reasons),
            "skip_reasons": dict(self.skip_reasons),
            "files": [
                {
                    "path": f.path,
                    "format": f.format,
                    "committed": f.committed,
                    "error": f.error,
                    "warnings": list(f.warnings),
                    **{k: getattr(f, k) for k in keys},
                    "quarantine_reasons": dict(f.quarantine_reasons),
                    "skip_reasons": dict(f.skip_reasons),
                }
                for f in self.files
            ],
        }

    @property
    def failed(self) -> list[FileSummary]:
        return [f for f in self.files if f.error is not None]

    def warnings(self) -> list[str]:
        """Every file's warnings, each prefixed with its file."""
        return [f"{f.path}: {w}" for f in self.files for w in f.warnings]

    def lines(self) -> list[str]:
        """Human-readable summary lines: one per file (and its failure or warnings), then a total."""
        out = []
        for f in self.files:
            if not f.committed:
                out.append(f"{f.path}: failed, nothing loaded: {f.error}")
                continue
            out.append(
                f"{f.path} [{f.format}]: read {f.rows_read}, loaded {f.loaded}, duplicates {f.duplicates}, "
                f"quarantined {f.quarantined}, skipped {f.skipped}, new items {f.new_items}"
                + (f", pairs without a verdict {f.unlabelled}" if f.unlabelled else "")
            )
            if f.annotations or f.annotation_duplicates:
                out.append(
                    f"  concept annotations (principle annotators): loaded {f.annotations}, "
                    f"already stored {f.annotation_duplicates}"
                )
            if f.error:
                out.append(f"  failed: {f.error}")
            out.extend(f"  warning: {w}" for w in f.warnings)
        out.append(
            f"total: read {self.rows_read}, loaded {self.loaded}, duplicates {self.duplicates}, "
            f"quarantined {self.quarantined}, skipped {self.skipped}, new items {self.new_items}"
            + (f", pairs without a verdict {self.unlabelled}" if self.unlabelled else "")
        )
        for reason, n in self.quarantine_reasons.most_common():
            out.append(f"  quarantined {n}: {reason}")
        for reason, n in self.skip_reasons.most_common():
            out.append(f"  skipped {n}: {reason}")
        return out
