"""The paper's two applications of explanations: judge guidance (Judge Hack, §8) and tie-breaking (§9)."""
