"""Ingestion: preference files (canonical, HF chosen/rejected, AnnotatedPairs, Chatbot Arena) -> raw.* tables.

Public API::

    summary = ingest_paths(con, ["pairs.jsonl.gz"], fmt=None, domain=None, mechanism=None, mechanism_type=None)

Raises :class:`IngestError` on fatal problems (missing file, unknown format, bad arguments, a file with no usable
rows). Bad records never fail a file: they land in ``raw.quarantine`` with file, line and reason.
"""

from pipelines.ingest.adapters import FORMATS, detect_format
from pipelines.ingest.api import ingest_paths
from pipelines.ingest.model import FileSummary, IngestError, IngestSummary

__all__ = ["FORMATS", "FileSummary", "IngestError", "IngestSummary", "detect_format", "ingest_paths"]
