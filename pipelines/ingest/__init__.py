"""Ingestion: preference files (canonical, HF chosen/rejected, AnnotatedPairs, ICAI CSV, Chatbot Arena) -> raw.*.

Public API::

    summary = ingest_paths(con, ["pairs.jsonl.gz"], fmt=None, domain=None, mechanism=None, mechanism_type=None,
                           mechanism_type_default=None)

AnnotatedPairs ``principle`` annotators are loaded as concept annotations (:mod:`pipelines.ingest.concepts`).

Each file is committed on its own. A missing file, a directory, an unknown format or bad arguments raise
:class:`IngestError` before anything is written; a file that cannot be read (not text, damaged, a CSV header that is
not UTF-8) or has no usable row fails alone, and once every file was attempted an :class:`IngestError` names each
failed file and its cause (``exc.summary`` has every file's counts). Bad records never fail a file: they land in
``raw.quarantine`` with file, line and reason. ``raw.ingest_runs`` records every run with its status and reason.
"""

from pipelines.ingest.adapters import FORMATS, detect_format
from pipelines.ingest.api import ingest_paths
from pipelines.ingest.model import FileSummary, IngestError, IngestSummary

__all__ = ["FORMATS", "FileSummary", "IngestError", "IngestSummary", "detect_format", "ingest_paths"]
