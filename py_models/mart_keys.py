"""The reserved ``domain`` keys of the fit marts (one owner; pure, no I/O).

``SHARED_DOMAIN``: the row of the shared vector b in ``fct_concept_effects`` (and the bootstrap's intervals of b).
``ALL_DOMAINS``: the overall row of ``fct_model_metrics`` and of the score agreement, and the all-domains scope of
``fct_mechanism_contrasts``. Real domain names never take these values (dunder names are not domains).
"""

from __future__ import annotations

__all__ = ["SHARED_DOMAIN", "ALL_DOMAINS"]

SHARED_DOMAIN = "__shared__"
ALL_DOMAINS = "__all__"
