"""preflens pipelines: ingestion, annotation, dbt orchestration, quality gates and publication (all the I/O)."""

__version__ = "0.1.0"
