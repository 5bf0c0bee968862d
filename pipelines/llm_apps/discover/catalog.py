"""Concept catalogs for the LLM method: fixed concepts, discovered catalogs (versioned), user YAML concepts.

A catalog version is stored in ``raw.concept_catalog``; the *active* catalog is the latest stored version
(or the fixed concepts when nothing was discovered yet), overlaid with the user's YAML file. The LLM
annotator copies the active catalog into ``raw.concepts`` under its own (annotator, version).

User YAML (``concepts.yaml``, or ``[llm] concepts_file`` / ``--concepts``)::

    concepts:
      - name: Legal Citations
        definition: "A high score indicates the response cites statutes or cases; A low score indicates the response cites none"
        description: optional one-liner
        domains: [legal]          # omit for a shared concept
      - name: Clarity             # an existing concept: the user's definition replaces the catalog's
        definition: "A high score indicates ...; A low score indicates ..."
      - name: Engagement
        remove: true              # drop a concept from the active catalog
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

from pipelines.core.ids import new_id

DEFINITION_RE = re.compile(r"^A high score indicates the response .+; A low score indicates the response .+$", re.S)


def definition_hash(definition: str) -> str:
    return hashlib.sha256(definition.strip().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LLMConcept:
    name: str
    definition: str
    description: str = ""
    origin: str = "fixed"  # fixed | discovered | user
    is_shared: bool = True
    domains: tuple[str, ...] = ()  # for specific concepts: where they apply
    n_domains: int = 0
    n_batches: int = 0
    merged_from: tuple[str, ...] = field(default=())

    @property
    def definition_hash(self) -> str:
        return definition_hash(self.definition)

    def applies_to(self, domain: str) -> bool:
        return self.is_shared or domain in self.domains


def _fx(name: str, high: str, low: str) -> LLMConcept:
    return LLMConcept(
        name,
        f"A high score indicates the response {high}; A low score indicates the response {low}.",
        description=f"Generic concept fixed by the method: {name.lower()}.",
        origin="fixed",
    )


# The paper's 10 fixed generic concepts (Box E.4), in its "A high score ...; A low score ..." form.
FIXED_CONCEPTS: tuple[LLMConcept, ...] = (
    _fx("Specificity", "gives precise, concrete details tailored to the query", "is vague, generic or non-committal"),
    _fx("Clarity", "is clear, well expressed and easy to follow", "is confusing, ambiguous or hard to follow"),
    _fx("Relevance", "stays on the user's query and addresses what was asked", "drifts off-topic or ignores the query"),
    _fx("Helpfulness", "meaningfully helps the user achieve their goal", "does little to help the user"),
    _fx("Empathy", "acknowledges the user's feelings and situation with care", "is cold or dismissive of the user"),
    _fx("Accuracy", "is factually correct and free of errors", "contains factual errors or false claims"),
    _fx("Informativeness", "provides substantial useful information", "provides little or no useful information"),
    _fx("Creativity", "shows original, imaginative ideas or expression", "is formulaic and unoriginal"),
    _fx("Safety", "avoids harmful, dangerous or unethical content", "includes or enables harmful content"),
    _fx("Engagement", "is engaging and holds the reader's interest", "is dull or disengaging"),
)


def latest_catalog_version(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("select max(catalog_version) from raw.concept_catalog").fetchone()
    return row[0] if row and row[0] else None


def load_catalog(con: duckdb.DuckDBPyConnection, version: str) -> list[LLMConcept]:
    rows = con.execute(
        """select concept, definition, description, origin, is_shared, coalesce(domains, []), coalesce(n_domains, 0),
                  coalesce(n_batches, 0), coalesce(merged_from, []) from raw.concept_catalog
           where catalog_version = ? order by concept""",
        [version],
    ).fetchall()
    return [
        LLMConcept(r[0], r[1], r[2], r[3], bool(r[4]), tuple(r[5]), int(r[6]), int(r[7]), tuple(r[8])) for r in rows
    ]


def store_catalog(con: duckdb.DuckDBPyConnection, concepts: list[LLMConcept], label: str = "discovered") -> str:
    """Store a new catalog version (sortable: UTC timestamp + content hash) and return it."""
    content = "\n".join(
        sorted(f"{c.name}\x1f{c.definition_hash}\x1f{c.is_shared}\x1f{','.join(c.domains)}" for c in concepts)
    )
    now = datetime.now(UTC)
    content_hash = hashlib.sha256(content.encode()).hexdigest()[:8]
    version = new_id("cat-", now=now, stamp="%Y%m%dT%H%M%S%f", suffix=content_hash)
    rows = [
        (
            version,
            c.name,
            c.description or c.name,
            c.definition,
            c.origin,
            c.is_shared,
            list(c.domains) or None,
            c.n_domains,
            c.n_batches,
            list(c.merged_from) or None,
            c.definition_hash,
            now.replace(tzinfo=None),
        )
        for c in concepts
    ]
    con.executemany("insert into raw.concept_catalog values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return version


def read_user_concepts(path: Path) -> list[dict]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    entries = data.get("concepts", data) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list under 'concepts'")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not str(e.get("name", "")).strip():
            raise ValueError(f"{path}: concept #{i + 1} needs a name")
        if (
            not e.get("remove")
            and e.get("definition") is not None
            and not DEFINITION_RE.match(str(e["definition"]).strip())
        ):
            raise ValueError(
                f"{path}: concept {e['name']!r}: definition must read 'A high score indicates the response "
                "...; A low score indicates the response ...'"
            )
        out.append(e)
    return out


def apply_user_concepts(catalog: list[LLMConcept], entries: list[dict]) -> list[LLMConcept]:
    by_name = {c.name: c for c in catalog}
    for e in entries:
        name = str(e["name"]).strip()
        if e.get("remove"):
            by_name.pop(name, None)
            continue
        domains = tuple(e.get("domains") or ())
        if name in by_name:
            c = by_name[name]
            by_name[name] = replace(
                c,
                definition=str(e.get("definition") or c.definition).strip(),
                description=str(e.get("description") or c.description),
                origin="user",
                is_shared=not domains if "domains" in e else c.is_shared,
                domains=domains if "domains" in e else c.domains,
            )
        else:
            if not e.get("definition"):
                raise ValueError(f"user concept {name!r} needs a definition")
            by_name[name] = LLMConcept(
                name, str(e["definition"]).strip(), str(e.get("description") or name), "user", not domains, domains
            )
    return sorted(by_name.values(), key=lambda c: c.name)


def active_catalog(con: duckdb.DuckDBPyConnection, user_file: Path | None = None) -> tuple[str, list[LLMConcept]]:
    """(label, concepts): the latest stored catalog (else the fixed concepts) with the user file applied."""
    version = latest_catalog_version(con)
    concepts = load_catalog(con, version) if version else list(FIXED_CONCEPTS)
    label = version or "fixed"
    if user_file is not None:
        concepts = apply_user_concepts(concepts, read_user_concepts(user_file))
        label += "+user"
    return label, concepts
