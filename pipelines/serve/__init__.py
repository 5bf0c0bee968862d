"""Readers of the served copy: report, summary, explain."""
