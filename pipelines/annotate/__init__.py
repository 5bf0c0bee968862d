"""Concept annotation. The embedded offline annotator (no LLM) is the default."""

from pipelines.annotate.catalog import CONCEPTS, OFFLINE_ANNOTATOR, OFFLINE_ANNOTATOR_VERSION, Concept
from pipelines.annotate.offline import annotate_items, annotate_pending, catalog_frame

__all__ = [
    "CONCEPTS",
    "OFFLINE_ANNOTATOR",
    "OFFLINE_ANNOTATOR_VERSION",
    "Concept",
    "annotate_items",
    "annotate_pending",
    "catalog_frame",
]
