"""`preflens export --format annotated_pairs`: the served copy as Feedback Forensics / ICAI AnnotatedPairs v2 JSON.

What goes in (the layout of the peers' own files, ``metadata`` / ``annotators`` / ``comparisons``):

* one comparison per item with at least one exported verdict: ``id`` = item_id, ``prompt`` (``null`` when the pair
  has none), ``response_a/b`` = ``{text[, model]}`` in the canonical orientation of every fact table, ``metadata`` =
  ``{domain}``;
* each mechanism as an annotator (id = 8 hex digits of its name's sha256, ``name`` = the part after ``<type>:``,
  ``type`` = human | judge | reward), its verdicts as ``{"pref": "a"|"b"}``. The served copy holds the *decisive*
  verdicts of fitted mechanisms (``marts.fct_predictions``, the latest published fit); ties and unfitted mechanisms are
  not in it, and :class:`ExportResult` counts what was left out (from ``marts.dim_mechanisms``);
* with ``concepts=True``, each concept of the served annotator version (``marts.fct_pair_concepts``,
  ``marts.dim_concepts``) as a ``principle`` annotator: ``+1`` -> ``a``, ``-1`` -> ``b``, equal -> ``pref: null,
  no_pref_reason: equal``, not relevant -> ``pref: null, no_pref_reason: not_applicable``. Its description is the
  principle text of an imported concept (so a file exported from an import carries the same principles) and, for
  other concepts, "Select the response that <the high end of the concept's definition>".

The file loads back into ``preflens ingest`` with the same items and verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.serve.served import connect_served, table_columns

EXPORT_FORMATS: tuple[str, ...] = ("annotated_pairs",)
AP_VERSION = "2.0"
_HIGH = re.compile(r"^A high score indicates the response (.+?);", re.DOTALL)


class ExportError(Exception):
    """The served copy cannot be exported as asked (no served copy, missing tables, an unknown mechanism)."""


@dataclass
class ExportResult:
    """What an export wrote, and what the served copy could not give it."""

    path: Path
    comparisons: int = 0
    verdicts: int = 0
    mechanisms: list[str] = field(default_factory=list)
    principles: int = 0
    concept_votes: int = 0
    annotator_version: str | None = None
    #: mechanism -> verdicts the served copy counts (dim_mechanisms) but does not hold (ties, unfitted mechanisms)
    not_exported: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"wrote {self.path}: {self.comparisons} comparisons, {self.verdicts} verdicts of "
            f"{len(self.mechanisms)} mechanisms"
        ]
        if self.principles:
            out.append(
                f"  {self.principles} concepts of annotator version {self.annotator_version} as principle "
                f"annotators ({self.concept_votes} votes)"
            )
        for mech, n in sorted(self.not_exported.items()):
            out.append(f"  not exported: {n} verdicts of {mech} (ties or not fitted: the served copy has no rows)")
        return out


def annotator_id(kind: str, name: str) -> str:
    """A short stable annotator id, as ICAI's (8 hex digits)."""
    return hashlib.sha256(f"preflens\x1f{kind}\x1f{name}".encode()).hexdigest()[:8]


def principle_description(concept: str, definition: str | None, description: str | None, origin: str | None) -> str:
    """The principle text of a concept: the imported principle itself, else built from the definition's high end."""
    if origin == "imported" and description:
        return description
    match = _HIGH.match(definition or "")
    if match:
        return f"Select the response that {match.group(1).strip()}"
    return f"Select the response that scores higher on the concept '{concept}'"


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _require(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> None:
    missing = [t for t in tables if not table_columns(con, t)]
    if missing:
        raise ExportError(f"the served copy has no marts.{', marts.'.join(missing)}; run `preflens build` first")


def build_document(
    con: duckdb.DuckDBPyConnection,
    *,
    concepts: bool = False,
    mechanisms: list[str] | None = None,
    default_mechanism: str | None = None,
    dataset_name: str = "preflens export",
) -> tuple[dict[str, Any], ExportResult]:
    """The AnnotatedPairs document of a served copy (see the module docstring) and its counts."""
    _require(con, ("fct_predictions", "dim_items", "dim_mechanisms"))
    known = {r["mechanism"]: r for r in _rows(con, "select * from marts.dim_mechanisms order by mechanism")}
    unknown = sorted(set(mechanisms or []) - set(known))
    if unknown:
        raise ExportError(f"no mechanism {', '.join(map(repr, unknown))} in the served copy")
    verdicts = _rows(
        con,
        """select distinct label_id, item_id, mechanism, actual_winner as winner
           from marts.fct_predictions order by item_id, mechanism""",
    )
    if mechanisms:
        verdicts = [v for v in verdicts if v["mechanism"] in mechanisms]
    per_mech: dict[str, int] = defaultdict(int)
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    ids = {m: annotator_id("mechanism", m) for m in known}
    for v in verdicts:
        by_item[v["item_id"]][ids[v["mechanism"]]] = v["winner"]
        per_mech[v["mechanism"]] += 1
    exported = sorted(per_mech)
    if not exported:
        raise ExportError("the served copy holds no decisive verdict to export (marts.fct_predictions is empty)")
    if default_mechanism is not None and default_mechanism not in per_mech:
        raise ExportError(f"--default-mechanism {default_mechanism!r} has no exported verdict")
    default = default_mechanism or max(exported, key=lambda m: (known[m]["mechanism_type"] == "human", per_mech[m], m))
    annotators: dict[str, dict[str, Any]] = {}
    for m in sorted(exported, key=lambda m: (m != default, m)):
        mtype = known[m]["mechanism_type"]
        who = m.split(":", 1)[1] if m.startswith(f"{mtype}:") else m
        annotators[ids[m]] = {"name": who, "description": f"preflens mechanism {m}", "type": mtype}
    result = ExportResult(Path(), mechanisms=exported)
    for m in mechanisms or list(known):
        missing = int(known[m]["n_labels"]) - per_mech.get(m, 0)
        if missing > 0:
            result.not_exported[m] = missing

    votes: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    if concepts:
        _require(con, ("fct_pair_concepts", "dim_concepts"))
        catalog = _rows(
            con, "select concept, annotator, annotator_version, description, definition, origin from marts.dim_concepts"
        )
        cids = {}
        for c in sorted(catalog, key=lambda c: c["concept"]):
            aid = annotator_id("concept", f"{c['annotator']}\x1f{c['annotator_version']}\x1f{c['concept']}")
            cids[c["concept"]] = aid
            desc = principle_description(c["concept"], c["definition"], c["description"], c["origin"])
            annotators[aid] = {"description": desc, "type": "principle"}
            result.annotator_version = f"{c['annotator']}/{c['annotator_version']}"
        result.principles = len(cids)
        cells = _rows(
            con,
            "select item_id, concept, comp_value, is_relevant from marts.fct_pair_concepts order by item_id, concept",
        )
        for cell in cells:
            if cell["item_id"] not in by_item or cell["concept"] not in cids:
                continue
            cv = int(cell["comp_value"])
            if not cell["is_relevant"]:
                vote: dict[str, Any] = {"pref": None, "no_pref_reason": "not_applicable"}
            elif cv == 0:
                vote = {"pref": None, "no_pref_reason": "equal"}
            else:
                vote = {"pref": "a" if cv > 0 else "b"}
            votes[cell["item_id"]][cids[cell["concept"]]] = vote
            result.concept_votes += 1

    items = _rows(
        con,
        "select item_id, prompt, response_a, response_b, model_a, model_b, domain from marts.dim_items order by item_id",
    )
    comparisons = []
    for it in items:
        prefs = by_item.get(it["item_id"])
        if not prefs:
            continue
        annotations: dict[str, Any] = {aid: {"pref": w} for aid, w in prefs.items()}
        annotations.update(votes.get(it["item_id"], {}))
        comparisons.append(
            {
                "id": it["item_id"],
                "prompt": it["prompt"],
                "response_a": _response(it["response_a"], it["model_a"]),
                "response_b": _response(it["response_b"], it["model_b"]),
                "annotations": annotations,
                "metadata": {"domain": it["domain"]},
            }
        )
    result.comparisons = len(comparisons)
    result.verdicts = sum(per_mech.values())
    doc = {
        "metadata": {
            "version": AP_VERSION,
            "description": "AnnotatedPairs dataset exported by preflens from its served copy",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dataset_name": dataset_name,
            "default_annotator": ids[default],
            "available_metadata_keys_per_comparison": ["domain"],
        },
        "annotators": annotators,
        "comparisons": comparisons,
    }
    return doc, result


def _response(text: str, model: str | None) -> dict[str, str]:
    return {"text": text, "model": model} if model else {"text": text}


def export_annotated_pairs(
    serve_db: Path,
    path: Path,
    *,
    concepts: bool = False,
    mechanisms: list[str] | None = None,
    default_mechanism: str | None = None,
    dataset_name: str = "preflens export",
) -> ExportResult:
    """Write the served copy as AnnotatedPairs v2 JSON to ``path`` (atomically: a temporary file, then a rename)."""
    con = connect_served(serve_db, error=ExportError)
    try:
        doc, result = build_document(
            con,
            concepts=concepts,
            mechanisms=mechanisms,
            default_mechanism=default_mechanism,
            dataset_name=dataset_name,
        )
    finally:
        con.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.path = path
    return result
