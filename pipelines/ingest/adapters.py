"""Turn each input format into canonical records (see :data:`CANONICAL_COLUMNS`), and validate them.

Formats:

* ``canonical``: the ``/work/shared/data`` layout (``prompt, response_a, response_b, winner, mechanism, ...``).
* ``hf``: ``prompt, chosen, rejected`` (chosen wins). ``chosen``/``rejected`` may also be message lists
  ``[{role, content}, ...]``: the response is the last message and, without a ``prompt`` column, the prompt is the
  transcript before it. Mechanism comes from the arguments.
* ``annotated_pairs``: Feedback Forensics / ICAI AnnotatedPairs v2 JSON. ``prompt: null`` is a pair without a prompt
  (stored as NULL). Annotator types map to mechanism types (:data:`AP_MECHANISM_TYPES`): ``human`` ->
  ``human:<name or id>``, ``judge``/``reward`` kept; any other type (``unknown``, ICAI's default annotator taken from
  ``preferred_text``, or none) takes ``--mechanism-type-default`` (or ``--mechanism-type``); without one its verdicts
  are quarantined, naming the flag. ``--mechanism`` names the default annotator. ``principle`` annotators are not
  mechanisms: their votes become concept annotations (:mod:`pipelines.ingest.concepts`). ``model_identity``
  annotators are not preferences: they are skipped and counted. ``pref: null`` -> ``tie``.
* ``icai_csv``: the CSV input of ICAI and Feedback Forensics: ``text_a, text_b, preferred_text`` (``text_a`` |
  ``text_b``; ``tie`` allowed), optional ``prompt`` (or ICAI's ``input``), ``model_a``, ``model_b``, ``domain``, and an
  index column (``index`` or unnamed) kept as the source item id. A blank prompt cell or no prompt column: no prompt.
  The verdicts are the mechanism ``<type>:preferred_text`` (as the same data imported as AnnotatedPairs), with the
  type from ``--mechanism-type-default`` / ``--mechanism-type``, or ``--mechanism``.
* ``arena``: Chatbot Arena battles (``model_a, model_b, winner, conversation_a, conversation_b``).

Unlabelled pairs (``Options.allow_unlabelled``, passed by `preflens score` only): a row whose winner is absent (no
column, null, or blank) is a pair without a verdict, loaded as an item with no label row (:func:`validate`); an
AnnotatedPairs comparison that yields no verdict row (no ``annotations``, or only principle / model_identity /
unknown annotators) gives one such row for its pair. ``hf`` always carries a verdict (chosen wins). Without the
option, a missing winner is quarantined as always.

Adapters never drop a record: each one becomes a row of the output frame (``_reason`` set when it must be
quarantined), an :class:`Issue`, or a counted skip. A text field whose input value is not a string (a number, an
object, a list that is not a message list) is quarantined as ``<field> is a number, expected text``, never stored as
its JSON text; only ids (``item_id``, ``pair_id``, ``id``, ``question_id``) may be numbers, stored as their text.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from pipelines.ingest.concepts import (
    CONCEPT_ROW_SCHEMA,
    catalog_frame,
    imported_version,
    name_principles,
    vote_value,
)
from pipelines.ingest.model import (
    CANONICAL_COLUMNS,
    DEFAULT_DOMAIN,
    MECHANISM_TYPES,
    REQUIRED_COLUMNS,
    IngestError,
    Issue,
)
from pipelines.ingest.readers import (
    KIND_PREFIX,
    LIST_KINDS,
    R_NON_UTF8,
    RawDocument,
    RawTable,
    clip,
    has_surrogate,
    json_kind,
    printable,
)

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

FORMATS: tuple[str, ...] = ("canonical", "hf", "annotated_pairs", "icai_csv", "arena")

ARENA_MECHANISM = "human:chatbot-arena"
ARENA_PROTOCOL = "Chatbot Arena: a user chats with two anonymous models and votes"
ARENA_WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}
SKIP_MODEL_IDENTITY = "model_identity annotator (not a preference)"
#: the mechanism name of the ``preferred_text`` verdicts (ICAI CSV, and ICAI's default AnnotatedPairs annotator)
PREFERRED_TEXT = "preferred_text"
ICAI_WINNERS = {"text_a": "a", "text_b": "b", "a": "a", "b": "b", "tie": "tie"}


@dataclass(frozen=True)
class Options:
    """Arguments that fill in what a file does not say."""

    domain: str | None = None
    mechanism: str | None = None
    mechanism_type: str | None = None
    #: the mechanism type of verdicts whose type the file does not name or names in no known way
    mechanism_type_default: str | None = None
    #: a row without a winner is a pair to score, not a bad row (`preflens score` only; see :func:`validate`)
    allow_unlabelled: bool = False

    @property
    def fallback_type(self) -> str | None:
        """The type for untyped verdicts: ``--mechanism-type-default``, else ``--mechanism-type``."""
        return self.mechanism_type_default or self.mechanism_type


@dataclass
class Adapted:
    """Canonical rows of one file (``_line``, ``_raw``, canonical columns, ``_reason``) plus unreadable records."""

    frame: pl.DataFrame
    issues: list[Issue] = field(default_factory=list)
    skips: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)  # canonical column -> input column, for reasons
    #: imported concept annotations (AnnotatedPairs principle votes), :data:`~pipelines.ingest.concepts.CONCEPT_ROW_SCHEMA`
    concepts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CONCEPT_ROW_SCHEMA))
    catalog: pl.DataFrame | None = None  # their raw.concepts rows
    concept_version: str | None = None  # their annotator version

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.issues) + sum(self.skips.values()) + self.concepts.height


# --------------------------------------------------------------------------------------------- detection


def detect_format(columns: Iterable[str]) -> str:
    """Name the input format from its top-level columns (or JSON document keys)."""
    cols = {c.strip().lower() for c in columns}
    if "comparisons" in cols and ("annotators" in cols or "metadata" in cols):
        return "annotated_pairs"
    if {"text_a", "text_b", "preferred_text"} <= cols:
        return "icai_csv"
    if {"conversation_a", "conversation_b"} <= cols:
        return "arena"
    if {"chosen", "rejected"} <= cols:
        return "hf"
    if {"response_a", "response_b"} <= cols or len({"prompt", "response_a", "response_b", "winner"} & cols) >= 3:
        return "canonical"
    shown = ", ".join(sorted(cols)[:20]) or "(none)"
    raise IngestError(f"cannot detect the input format from columns [{shown}]; pass --format ({'|'.join(FORMATS)})")


def resolve_mechanism(mechanism: str, mechanism_type: str | None) -> tuple[str, str]:
    """``(mechanism, type)`` from ``--mechanism`` and ``--mechanism-type``; prefixes ``<type>:`` when missing."""
    mechanism = mechanism.strip()
    prefix, sep, who = mechanism.partition(":")
    if sep and prefix in MECHANISM_TYPES:
        if not who.strip():
            raise IngestError(f"mechanism {mechanism!r} has no name after '{prefix}:'")
        if mechanism_type and mechanism_type != prefix:
            raise IngestError(f"--mechanism-type {mechanism_type} contradicts mechanism {mechanism!r}")
        return mechanism, prefix
    if not mechanism_type:
        raise IngestError(
            f"cannot tell the type of mechanism {mechanism!r}: pass --mechanism-type "
            f"({'|'.join(MECHANISM_TYPES)}) or write it as '<type>:{mechanism}'"
        )
    if mechanism_type not in MECHANISM_TYPES:
        raise IngestError(f"unknown mechanism type {mechanism_type!r} (expected {'|'.join(MECHANISM_TYPES)})")
    return f"{mechanism_type}:{mechanism}", mechanism_type


def adapt(raw: RawTable | RawDocument, fmt: str, opts: Options) -> Adapted:
    """Run the adapter of ``fmt`` and validate its rows."""
    adapters: dict[str, Callable[[Any, Options], Adapted]] = {
        "canonical": adapt_canonical,
        "hf": adapt_hf,
        "annotated_pairs": adapt_annotated_pairs,
        "icai_csv": adapt_icai_csv,
        "arena": adapt_arena,
    }
    if fmt not in adapters:
        raise IngestError(f"unknown format {fmt!r} (expected {'|'.join(FORMATS)})")
    if (fmt == "annotated_pairs") != isinstance(raw, RawDocument):
        raise IngestError(
            f"format {fmt} does not match the file's content"
            f" ({'a JSON document' if isinstance(raw, RawDocument) else 'a table of records'})"
        )
    adapted = adapters[fmt](raw, opts)
    adapted.frame = validate(adapted.frame, adapted.names, allow_unlabelled=opts.allow_unlabelled)
    return adapted


# --------------------------------------------------------------------------------------------- helpers


def _col(raw: RawTable, name: str) -> pl.Expr:
    """A raw column as String, or nulls when the file lacks it."""
    return pl.col(name) if name in raw.frame.columns else pl.lit(None, dtype=pl.String)


def _nonempty(expr: pl.Expr) -> pl.Expr:
    """Null for null / blank strings (optional fields)."""
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def _lit(value: str | None) -> pl.Expr:
    return pl.lit(value, dtype=pl.String)


_NUMBER_OK = frozenset({"a number"})


def _type_reason(raw: RawTable, fields: dict[str, frozenset[str]]) -> pl.Expr:
    """The quarantine reason for the first of ``fields`` (input column -> kinds allowed besides text) holding a value
    of another kind (``_kind.<column>`` from the reader), else null."""
    reasons = []
    for name, allowed in fields.items():
        kind_col = KIND_PREFIX + name
        if kind_col not in raw.frame.columns:
            continue
        kind = pl.col(kind_col)
        wrong = kind.is_not_null() & ~kind.is_in(list(allowed)) if allowed else kind.is_not_null()
        expected = "text" + (" or a number" if "a number" in allowed else "")
        expected += " or a message list" if allowed & LIST_KINDS else ""
        reasons.append(pl.when(wrong).then(pl.concat_str(_lit(f"{name} is "), kind, _lit(f", expected {expected}"))))
    return pl.coalesce(reasons) if reasons else _lit(None)


def _kinds(raw: RawTable, name: str) -> list[str | None]:
    """The kind of each row's value of ``name`` (None: text or null)."""
    col = KIND_PREFIX + name
    return raw.frame[col].to_list() if col in raw.frame.columns else [None] * raw.frame.height


def _domain_exprs(domain_col: pl.Expr, domain_source_col: pl.Expr, opts: Options) -> list[pl.Expr]:
    domain = _nonempty(domain_col.str.strip_chars())
    arg = (opts.domain or "").strip() or None
    return [
        pl.coalesce(domain, _lit(arg), _lit(DEFAULT_DOMAIN)).alias("domain"),
        pl.when(domain.is_not_null())
        .then(pl.coalesce(_nonempty(domain_source_col), _lit("dataset")))
        .otherwise(_lit("cli" if arg else "default"))
        .alias("domain_source"),
    ]


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    """Ensure the canonical column set and order."""
    missing = [
        pl.lit(None, dtype=pl.String).alias(c) for c in (*CANONICAL_COLUMNS, "_reason") if c not in frame.columns
    ]
    frame = frame.with_columns(missing) if missing else frame
    return frame.select("_line", "_raw", *CANONICAL_COLUMNS, "_reason")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _messages(value: str | None) -> list[dict[str, Any]] | None:
    """A message list ``[{role, content}, ...]`` from its JSON text, else None."""
    if value is None or not value.lstrip().startswith("["):
        return None
    try:
        msgs = json.loads(value)
    except ValueError:
        return None
    if isinstance(msgs, list) and all(isinstance(m, dict) and "content" in m for m in msgs):
        return msgs
    return None


def _content(msg: dict[str, Any]) -> str:
    c = msg.get("content")
    if isinstance(c, list):  # OpenAI-style content parts
        c = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
    return "" if c is None else str(c)


def _role(msg: dict[str, Any]) -> str:
    role = str(msg.get("role", "")).lower()
    return {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant"}.get(role, role)


def _transcript(msgs: list[dict[str, Any]]) -> str:
    """``User: ...`` / ``Assistant: ...`` transcript; a lone user turn is returned as is."""
    if len(msgs) == 1 and _role(msgs[0]) == "user":
        return _content(msgs[0])
    return "\n\n".join(f"{_role(m).capitalize() or 'Unknown'}: {_content(m)}" for m in msgs)


# --------------------------------------------------------------------------------------------- canonical


_CANONICAL_TEXT: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        (
            "prompt",
            "response_a",
            "response_b",
            "winner",
            "mechanism",
            "mechanism_type",
            "domain",
            "domain_source",
            "source",
            "model_a",
            "model_b",
            "protocol",
        ),
        frozenset(),
    ),
    "item_id": _NUMBER_OK,
    "pair_id": _NUMBER_OK,
}


def adapt_canonical(raw: RawTable, opts: Options) -> Adapted:
    """The shared-data layout; ``--domain/--mechanism/--mechanism-type`` only fill missing values."""
    mech_arg = opts.mechanism.strip() if opts.mechanism else None
    mech = pl.coalesce(_nonempty(_col(raw, "mechanism").str.strip_chars()), _lit(mech_arg))
    prefix = mech.str.split_exact(":", 1).struct.field("field_0")
    has_prefix = mech.str.contains(":") & prefix.is_in(list(MECHANISM_TYPES))
    mtype = pl.coalesce(
        _nonempty(_col(raw, "mechanism_type").str.strip_chars().str.to_lowercase()),
        _lit(opts.mechanism_type),
        pl.when(has_prefix).then(prefix),
    )
    frame = raw.frame.select(
        "_line",
        "_raw",
        _col(raw, "prompt").alias("prompt"),
        _col(raw, "response_a").alias("response_a"),
        _col(raw, "response_b").alias("response_b"),
        _col(raw, "winner").alias("winner"),
        *_domain_exprs(_col(raw, "domain"), _col(raw, "domain_source"), opts),
        pl.when(has_prefix | mech.is_null() | ~mtype.is_in(list(MECHANISM_TYPES)))
        .then(mech)
        .otherwise(pl.concat_str(mtype, _lit(":"), mech))
        .alias("mechanism"),
        mtype.alias("mechanism_type"),
        _nonempty(_col(raw, "source")).alias("source"),
        _nonempty(_col(raw, "item_id")).alias("source_item_id"),
        _nonempty(_col(raw, "pair_id")).alias("source_pair_id"),
        _nonempty(_col(raw, "model_a")).alias("model_a"),
        _nonempty(_col(raw, "model_b")).alias("model_b"),
        _nonempty(_col(raw, "protocol")).alias("protocol"),
        _type_reason(raw, _CANONICAL_TEXT).alias("_reason"),
    )
    return Adapted(_finish(frame), list(raw.issues))


# --------------------------------------------------------------------------------------------- hf


def adapt_hf(raw: RawTable, opts: Options) -> Adapted:
    """``prompt/chosen/rejected``: chosen is the winner; orientation is fixed later by the canonical rule."""
    if not opts.mechanism:
        raise IngestError("format hf needs --mechanism (e.g. 'human:my-raters' or --mechanism-type judge)")
    mechanism, mtype = resolve_mechanism(opts.mechanism, opts.mechanism_type)
    df = raw.frame
    chosen = df["chosen"].to_list() if "chosen" in df.columns else [None] * df.height
    rejected = df["rejected"].to_list() if "rejected" in df.columns else [None] * df.height
    prompts = df["prompt"].to_list() if "prompt" in df.columns else [None] * df.height
    kinds = {name: _kinds(raw, name) for name in ("prompt", "chosen", "rejected")}
    not_messages: list[str | None] = [None] * df.height  # a list value that is not a message list
    for i, (c, r) in enumerate(zip(chosen, rejected)):
        mc, mr = _messages(c), _messages(r)
        mp = _messages(prompts[i]) if kinds["prompt"][i] in LIST_KINDS else None
        for name, msgs in (("prompt", mp), ("chosen", mc), ("rejected", mr)):
            if kinds[name][i] in LIST_KINDS and not msgs:
                not_messages[i] = not_messages[i] or f"{name} is {kinds[name][i]}, not a message list"
        if mp:
            prompts[i] = _transcript(mp)
        if mc:
            chosen[i] = _content(mc[-1])
            if prompts[i] is None and len(mc) > 1:
                prompts[i] = _transcript(mc[:-1])
        if mr:
            rejected[i] = _content(mr[-1])
    lists_ok = frozenset(LIST_KINDS)
    text_fields = {"prompt": lists_ok, "chosen": lists_ok, "rejected": lists_ok, "id": _NUMBER_OK}
    text_fields |= dict.fromkeys(("source", "chosen_model", "rejected_model"), frozenset())
    frame = df.select(
        "_line",
        "_raw",
        pl.Series("prompt", prompts, dtype=pl.String),
        pl.Series("response_a", chosen, dtype=pl.String),
        pl.Series("response_b", rejected, dtype=pl.String),
        _lit("a").alias("winner"),
        *_domain_exprs(_lit(None), _lit(None), opts),
        _lit(mechanism).alias("mechanism"),
        _lit(mtype).alias("mechanism_type"),
        _nonempty(_col(raw, "source")).alias("source"),
        _nonempty(_col(raw, "id")).alias("source_item_id"),
        _nonempty(_col(raw, "chosen_model")).alias("model_a"),
        _nonempty(_col(raw, "rejected_model")).alias("model_b"),
        pl.coalesce(_type_reason(raw, text_fields), pl.Series(not_messages, dtype=pl.String)).alias("_reason"),
    )
    names = {"response_a": "chosen", "response_b": "rejected"}
    return Adapted(_finish(frame), list(raw.issues), names=names)


# --------------------------------------------------------------------------------------------- arena


def _arena_row(conv_a: str | None, conv_b: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """``(prompt, response_a, response_b, reason)`` from two conversations."""
    if conv_a is None or conv_b is None:
        missing = "conversation_a" if conv_a is None else "conversation_b"
        return None, None, None, f"missing required column '{missing}'"
    ma, mb = _messages(conv_a), _messages(conv_b)
    if not ma or not mb:
        return None, None, None, "malformed conversation"
    if _role(ma[-1]) != "assistant" or _role(mb[-1]) != "assistant":
        return None, None, None, "conversation does not end with an assistant turn"
    users_a = [_content(m) for m in ma if _role(m) == "user"]
    users_b = [_content(m) for m in mb if _role(m) == "user"]
    if not users_a:
        return None, None, None, "conversation has no user turn"
    if users_a != users_b:
        return None, None, None, "conversations differ in user turns"
    ra, rb = _content(ma[-1]), _content(mb[-1])
    # multi-turn: the earlier assistant turns differ between a and b; take them from the canonical-first side so
    # the prompt (hence the item) does not depend on the input's a/b order
    context = ma[:-1] if _sha(ra) <= _sha(rb) else mb[:-1]
    return _transcript(context), ra, rb, None


def adapt_arena(raw: RawTable, opts: Options) -> Adapted:
    """Chatbot Arena battles: prompt = user turn(s), responses = final assistant turns."""
    mechanism, mtype = resolve_mechanism(opts.mechanism or ARENA_MECHANISM, opts.mechanism_type)
    df = raw.frame
    conv_a = df["conversation_a"].to_list() if "conversation_a" in df.columns else [None] * df.height
    conv_b = df["conversation_b"].to_list() if "conversation_b" in df.columns else [None] * df.height
    rows = [_arena_row(a, b) for a, b in zip(conv_a, conv_b)]
    domain_col = next((c for c in ("category", "domain") if c in df.columns), None)
    domain = pl.col(domain_col) if domain_col else _lit(None)
    domain = pl.when(domain.str.starts_with("{") | domain.str.starts_with("[")).then(None).otherwise(domain)
    winner = _col(raw, "winner").str.strip_chars().str.to_lowercase()
    item_id = pl.coalesce(_nonempty(_col(raw, "question_id")), _nonempty(_col(raw, "id")))
    text_fields = dict.fromkeys(("winner", "model_a", "model_b"), frozenset[str]())
    text_fields |= {"question_id": _NUMBER_OK, "id": _NUMBER_OK}
    frame = df.select(
        "_line",
        "_raw",
        pl.Series("prompt", [r[0] for r in rows], dtype=pl.String),
        pl.Series("response_a", [r[1] for r in rows], dtype=pl.String),
        pl.Series("response_b", [r[2] for r in rows], dtype=pl.String),
        winner.replace_strict(ARENA_WINNERS, default=winner).alias("winner"),
        *_domain_exprs(domain, _lit(None), opts),
        _lit(mechanism).alias("mechanism"),
        _lit(mtype).alias("mechanism_type"),
        _lit("chatbot-arena").alias("source"),
        item_id.alias("source_item_id"),
        item_id.alias("source_pair_id"),
        _nonempty(_col(raw, "model_a")).alias("model_a"),
        _nonempty(_col(raw, "model_b")).alias("model_b"),
        _lit(ARENA_PROTOCOL).alias("protocol"),
        pl.coalesce(_type_reason(raw, text_fields), pl.Series([r[3] for r in rows], dtype=pl.String)).alias("_reason"),
    )
    return Adapted(_finish(frame), list(raw.issues))


# --------------------------------------------------------------------------------------------- annotated pairs

#: AnnotatedPairs annotator type -> mechanism type (``principle`` and ``model_identity`` are not mechanisms)
AP_MECHANISM_TYPES: dict[str, str] = {"human": "human", "judge": "judge", "reward": "reward"}
AP_PRINCIPLE = "principle"
AP_MODEL_IDENTITY = "model_identity"


def untyped_reason(kind: str) -> str:
    """The quarantine reason of verdicts whose annotator type names no mechanism type."""
    return (
        f"annotator type '{kind}' is not a mechanism type: pass --mechanism-type-default "
        f"({'|'.join(MECHANISM_TYPES)}), or --mechanism for the default annotator"
    )


def _ap_kind(spec: dict[str, Any]) -> str:
    kind = spec.get("type")
    return str(kind).strip().lower() if isinstance(kind, str) and kind.strip() else "unknown"


def _ap_mechanism(aid: str, spec: dict[str, Any], default_id: str | None, opts: Options) -> tuple[str, str] | str:
    """``(mechanism, type)`` of one verdict annotator, or its quarantine reason as a plain string."""
    kind = _ap_kind(spec)
    mapped = AP_MECHANISM_TYPES.get(kind)
    if aid == default_id and opts.mechanism:
        return resolve_mechanism(opts.mechanism, opts.mechanism_type or mapped or opts.mechanism_type_default)
    mtype = mapped or opts.fallback_type
    if mtype not in MECHANISM_TYPES:
        return untyped_reason(kind)
    who = spec.get("name") if isinstance(spec.get("name"), str) and spec["name"].strip() else aid
    return f"{mtype}:{str(who).strip()}", mtype


def _principles(annotators: dict[str, Any]) -> dict[str, str]:
    """Annotator id -> principle text of the ``principle`` annotators (the id when it has no description)."""
    out = {}
    for aid, spec in annotators.items():
        if isinstance(spec, dict) and _ap_kind(spec) == AP_PRINCIPLE:
            desc = spec.get("description")
            out[aid] = desc.strip() if isinstance(desc, str) and desc.strip() else aid
    return out


def adapt_annotated_pairs(doc: RawDocument, opts: Options) -> Adapted:
    """One row per (comparison, annotator); the line is the comparison's 1-based index.

    Verdict annotators give rows of the frame; principle annotators give rows of ``concepts`` (one per vote).
    """
    data = doc.data
    comparisons = data.get("comparisons")
    if not isinstance(comparisons, list):
        raise IngestError("not an AnnotatedPairs file: 'comparisons' is missing or not a list")
    annotators = data.get("annotators") or {}
    meta = data.get("metadata") or {}
    if not isinstance(annotators, dict) or not isinstance(meta, dict):
        raise IngestError("not an AnnotatedPairs file: 'annotators' and 'metadata' must be JSON objects")
    if has_surrogate(annotators) or has_surrogate(meta):
        raise IngestError("its 'annotators' or 'metadata' section is not UTF-8; save the file as UTF-8")
    default_id = meta.get("default_annotator")
    dataset = meta.get("dataset_name")
    principles = _principles(annotators)
    concept_of = name_principles(principles)
    mechs = {
        aid: _ap_mechanism(aid, spec if isinstance(spec, dict) else {}, default_id, opts)
        for aid, spec in annotators.items()
        if aid not in principles and _ap_kind(spec if isinstance(spec, dict) else {}) != AP_MODEL_IDENTITY
    }
    rows: list[dict[str, Any]] = []
    concept_rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    skips: Counter[str] = Counter()
    for line, comp in enumerate(comparisons, start=1):
        if not isinstance(comp, dict):
            issues.append(Issue(line, "not a JSON object", clip(printable(json.dumps(comp, ensure_ascii=False)))))
            continue
        if has_surrogate(comp):
            issues.append(Issue(line, R_NON_UTF8, clip(printable(json.dumps(comp, ensure_ascii=False)))))
            continue
        anns = comp.get("annotations")
        if opts.allow_unlabelled and (anns is None or anns == {}):
            anns = {}  # a pair to score: it gets its unlabelled row below
        elif not isinstance(anns, dict) or not anns:
            issues.append(Issue(line, "no annotations", clip(json.dumps(comp, ensure_ascii=False))))
            continue
        ra, rb = comp.get("response_a"), comp.get("response_b")
        ra = ra if isinstance(ra, dict) else {"text": ra}
        rb = rb if isinstance(rb, dict) else {"text": rb}
        cmeta = comp.get("metadata")
        cmeta = cmeta if isinstance(cmeta, dict) else {}
        cdomain = cmeta.get("domain") if isinstance(cmeta.get("domain"), str) else None
        wrong = next(
            (
                f"{name} is {kind}, expected text"
                for name, value in (
                    ("prompt", comp.get("prompt")),
                    ("response_a", ra.get("text")),
                    ("response_b", rb.get("text")),
                )
                if (kind := json_kind(value))
            ),
            None,
        )
        texts = {"prompt": comp.get("prompt"), "response_a": ra.get("text"), "response_b": rb.get("text")}
        pair = {
            "_line": line,
            **texts,
            "_domain": cdomain,
            "source": dataset,
            "source_item_id": None if comp.get("id") is None else str(comp.get("id")),
            "model_a": ra.get("model"),
            "model_b": rb.get("model"),
        }
        n_verdicts = len(rows)
        for aid, ann in anns.items():
            raw_text = clip(json.dumps({**comp, "annotations": {aid: ann}}, ensure_ascii=False))
            pref = ann.get("pref") if isinstance(ann, dict) else ann
            if aid in principles:
                vote = vote_value(pref, ann.get("no_pref_reason") if isinstance(ann, dict) else None)
                concept_rows.append(
                    {
                        "_line": line,
                        "_raw": raw_text,
                        **(texts if wrong is None else dict.fromkeys(texts)),
                        "concept": concept_of[aid],
                        "comp_value": vote[0] if vote else None,
                        "is_relevant": vote[1] if vote else None,
                        "_reason": wrong or (None if vote else "unknown principle vote value (expected a, b or null)"),
                    }
                )
                continue
            if aid not in annotators:
                issues.append(Issue(line, "unknown annotator", raw_text))
                continue
            mech = mechs.get(aid)
            if mech is None:
                skips[SKIP_MODEL_IDENTITY] += 1
                continue
            reason = wrong or (mech if isinstance(mech, str) else None)
            rows.append(
                {
                    **pair,
                    "_raw": raw_text,
                    "winner": "tie" if pref is None else str(pref).strip().lower(),
                    "mechanism": None if isinstance(mech, str) else mech[0],
                    "mechanism_type": None if isinstance(mech, str) else mech[1],
                    "source_pair_id": None if comp.get("id") is None else f"{comp.get('id')}/{aid}",
                    "protocol": (annotators.get(aid) or {}).get("description"),
                    "_reason": reason,
                }
            )
        if opts.allow_unlabelled and len(rows) == n_verdicts:
            # no verdict row (no annotations, or only principle / model_identity / unknown ones): the pair itself
            raw_text = clip(json.dumps(comp, ensure_ascii=False))
            rows.append({**pair, "_raw": raw_text, "winner": None, "_reason": wrong})
    schema = {"_line": pl.Int64, **{k: pl.String for k in ("_raw", *CANONICAL_COLUMNS, "_domain", "_reason")}}
    for r in rows:  # every value a string (or null): the frame is all-String by contract
        for k, v in r.items():
            if k != "_line" and v is not None and not isinstance(v, str):
                r[k] = json.dumps(v, ensure_ascii=False)
    frame = pl.DataFrame(rows, schema={k: v for k, v in schema.items() if k not in ("domain", "domain_source")})
    frame = frame.with_columns(*_domain_exprs(pl.col("_domain"), _lit(None), opts)).drop("_domain")
    adapted = Adapted(_finish(frame), issues, skips)
    if principles:
        concepts = {concept_of[aid]: desc for aid, desc in principles.items()}
        adapted.concept_version = imported_version(concepts)
        adapted.catalog = catalog_frame(concepts, adapted.concept_version)
        adapted.concepts = validate_concepts(pl.DataFrame(concept_rows, schema=CONCEPT_ROW_SCHEMA))
    return adapted


def validate_concepts(frame: pl.DataFrame) -> pl.DataFrame:
    """Set ``_reason`` on concept rows whose pair cannot be an item (the verdict rules for texts)."""
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col("response_a").is_null(), "missing required column 'response_a'"),
        (pl.col("response_b").is_null(), "missing required column 'response_b'"),
        (pl.col("prompt").str.strip_chars() == "", "empty prompt"),
        (pl.col("response_a").str.strip_chars() == "", "empty response_a"),
        (pl.col("response_b").str.strip_chars() == "", "empty response_b"),
        (pl.col("response_a").str.strip_chars() == pl.col("response_b").str.strip_chars(), "identical responses"),
    ]
    expr: Then | ChainedThen = pl.when(pl.col("_reason").is_not_null()).then(pl.col("_reason"))
    for check, reason in checks:
        expr = expr.when(check.fill_null(False)).then(_lit(reason))
    return frame.with_columns(expr.otherwise(None).alias("_reason"))


# --------------------------------------------------------------------------------------------- ICAI / FF CSV


def adapt_icai_csv(raw: RawTable, opts: Options) -> Adapted:
    """``text_a, text_b, preferred_text`` (+ optional prompt/input, model_a/b, domain, an index column)."""
    if opts.mechanism:
        mechanism, mtype = resolve_mechanism(opts.mechanism, opts.mechanism_type or opts.mechanism_type_default)
    elif opts.fallback_type:
        mechanism, mtype = resolve_mechanism(PREFERRED_TEXT, opts.fallback_type)
    else:
        raise IngestError(
            "format icai_csv does not say who gave its preferred_text verdicts: pass --mechanism-type-default "
            f"({'|'.join(MECHANISM_TYPES)}) for mechanism '<type>:{PREFERRED_TEXT}', or --mechanism '<type>:<who>'"
        )
    cols = raw.frame.columns
    prompt_col = next((c for c in ("prompt", "input") if c in cols), None)
    index_col = next((c for c in ("index", "") if c in cols), None)
    winner = _col(raw, "preferred_text").str.strip_chars().str.to_lowercase()
    text_fields = dict.fromkeys(
        ("text_a", "text_b", "preferred_text", "model_a", "model_b", "domain"), frozenset[str]()
    )
    if prompt_col:
        text_fields[prompt_col] = frozenset()
    if index_col is not None:
        text_fields[index_col] = _NUMBER_OK
    frame = raw.frame.select(
        "_line",
        "_raw",
        (_nonempty(pl.col(prompt_col)) if prompt_col else _lit(None)).alias("prompt"),
        _col(raw, "text_a").alias("response_a"),
        _col(raw, "text_b").alias("response_b"),
        winner.replace_strict(ICAI_WINNERS, default=winner).alias("winner"),
        *_domain_exprs(_col(raw, "domain"), _lit(None), opts),
        _lit(mechanism).alias("mechanism"),
        _lit(mtype).alias("mechanism_type"),
        _lit(None).alias("source"),
        (_nonempty(pl.col(index_col)) if index_col is not None else _lit(None)).alias("source_item_id"),
        _lit(None).alias("source_pair_id"),
        _nonempty(_col(raw, "model_a")).alias("model_a"),
        _nonempty(_col(raw, "model_b")).alias("model_b"),
        _lit(None).alias("protocol"),
        _type_reason(raw, text_fields).alias("_reason"),
    )
    names = {"response_a": "text_a", "response_b": "text_b", "winner": "preferred_text"}
    return Adapted(_finish(frame), list(raw.issues), names=names)


# --------------------------------------------------------------------------------------------- validation

#: the texts of a pair (required with or without a verdict)
_TEXT_COLUMNS = frozenset({"prompt", "response_a", "response_b"})
#: the columns of a pair's verdict besides the winner (its ``raw.labels`` row): null on an unlabelled pair
_LABEL_COLUMNS: tuple[str, ...] = ("mechanism", "mechanism_type", "protocol", "source_pair_id")


def validate(
    frame: pl.DataFrame, names: dict[str, str] | None = None, *, allow_unlabelled: bool = False
) -> pl.DataFrame:
    """Set ``_reason`` (first failing check wins) and normalise ``winner``; names map columns to input names.

    With ``allow_unlabelled`` (the pairs `preflens score` reads), a row whose winner is absent (null, or blank: a CSV
    cell is never null) is an unlabelled pair: its texts are checked, its winner and mechanism are not, and its
    label columns (mechanism, type, protocol, pair id) are set to null (it becomes an item without a label row). A
    winner that is present is checked as always. Without it, a missing winner is quarantined.
    """
    names = names or {}
    winner = pl.col("winner").str.strip_chars().str.to_lowercase()
    if allow_unlabelled:
        winner = pl.when(winner == "").then(None).otherwise(winner)
    frame = frame.with_columns(winner.alias("winner"))
    labelled = pl.col("winner").is_not_null() if allow_unlabelled else pl.lit(True)
    checks: list[tuple[pl.Expr, pl.Expr]] = [(pl.col("_reason").is_not_null(), pl.col("_reason"))]
    for c in REQUIRED_COLUMNS:
        if c == "mechanism_type":
            continue  # reported as 'unknown mechanism_type' below
        missing = pl.col(c).is_null() if c in _TEXT_COLUMNS else labelled & pl.col(c).is_null()
        checks.append((missing, _lit(f"missing required column '{names.get(c, c)}'")))
    for c in ("prompt", "response_a", "response_b"):
        checks.append((pl.col(c).str.strip_chars() == "", _lit(f"empty {names.get(c, c)}")))
    prefix = pl.col("mechanism").str.split_exact(":", 1).struct.field("field_0")
    mtype_known = pl.col("mechanism_type").is_in(list(MECHANISM_TYPES)).fill_null(False)
    checks += [
        (pl.col("response_a").str.strip_chars() == pl.col("response_b").str.strip_chars(), _lit("identical responses")),
        (~pl.col("winner").is_in(["a", "b", "tie"]), _lit("unknown winner value")),
        (labelled & ~mtype_known, _lit("unknown mechanism_type")),
        (labelled & (prefix != pl.col("mechanism_type")), _lit("mechanism_type does not match mechanism")),
    ]
    (first_check, first_reason), *rest = checks
    expr: Then | ChainedThen = pl.when(first_check).then(first_reason)
    for check, reason in rest:
        expr = expr.when(check).then(reason)
    frame = frame.with_columns(expr.otherwise(None).alias("_reason"))
    if not allow_unlabelled:
        return frame
    return frame.with_columns(
        pl.when(pl.col("winner").is_null()).then(None).otherwise(pl.col(c)).alias(c) for c in _LABEL_COLUMNS
    )
