"""LLM applications built on published explanations: judge, concept discovery, apply (guide, tiebreak)."""
