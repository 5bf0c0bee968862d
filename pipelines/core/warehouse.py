"""The build warehouse: connection helper and the one owner of every table DDL Python writes.

Inputs and annotations live in schema ``raw``, the package's records of its own runs (builds, quality, evaluation,
applications) in schema ``ops``, both in the build DuckDB file (``warehouse/preflens.duckdb``).
dbt reads them as sources; BI never opens this file (it reads the served copy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

RAW_SCHEMA = "raw"
OPS_SCHEMA = "ops"

RAW_DDL: dict[str, str] = {
    # One row per distinct (prompt, unordered pair of responses). Orientation is canonical:
    # response_a is the response whose sha256 is smaller, so re-ingesting in any order is stable.
    "items": """
        create table if not exists raw.items (
            item_id          varchar primary key,   -- sha256(prompt, response_a, response_b)[:16] in canonical order
            prompt           varchar,              -- NULL: the input had no prompt (AnnotatedPairs prompt: null)
            response_a       varchar not null,
            response_b       varchar not null,
            domain           varchar not null,
            source           varchar,              -- upstream dataset name when known
            source_item_id   varchar,              -- the upstream item id when the input had one
            model_a          varchar,
            model_b          varchar,
            first_ingest_id  varchar not null,
            ingested_at      timestamp not null
        )""",
    # One row per (item, mechanism). winner is oriented to raw.items (a = items.response_a).
    "labels": """
        create table if not exists raw.labels (
            label_id         varchar primary key,   -- sha256(item_id, mechanism)[:16]
            item_id          varchar not null,
            mechanism        varchar not null,      -- '<type>:<who>', e.g. 'judge:gpt-4'
            mechanism_type   varchar not null,      -- human | judge | reward
            winner           varchar not null,      -- a | b | tie
            protocol         varchar,
            source_pair_id   varchar,
            source_file      varchar not null,
            source_line      bigint not null,
            first_ingest_id  varchar not null,
            ingested_at      timestamp not null
        )""",
    "domains": """
        create table if not exists raw.domains (
            domain           varchar primary key,
            domain_source    varchar,               -- dataset | heuristic | cli | ...
            first_ingest_id  varchar not null
        )""",
    # Every input row that could not be loaded, with where it came from and why. Nothing is dropped silently.
    "quarantine": """
        create table if not exists raw.quarantine (
            ingest_id        varchar not null,
            source_file      varchar not null,
            source_line      bigint not null,
            reason           varchar not null,
            raw_text         varchar,               -- the offending record, truncated to 4000 chars
            quarantined_at   timestamp not null
        )""",
    "ingest_runs": """
        create table if not exists raw.ingest_runs (
            ingest_id        varchar primary key,
            started_at       timestamp not null,
            finished_at      timestamp,
            files            varchar[],
            rows_read        bigint,
            rows_loaded      bigint,
            rows_duplicate   bigint,
            rows_quarantined bigint,
            status           varchar,               -- running | completed | completed_with_warnings | failed | interrupted
            reason           varchar                -- why it failed or warned: each file named, with its cause
        )""",
    # The concept catalog (offline catalog now; discovered / user concepts later).
    "concepts": """
        create table if not exists raw.concepts (
            concept          varchar not null,      -- display name; data, never an SQL identifier
            annotator        varchar not null,      -- e.g. 'offline'
            annotator_version varchar not null,
            description      varchar not null,
            definition       varchar not null,      -- 'A high score indicates ...; A low score indicates ...'
            origin           varchar not null,      -- offline | fixed | discovered | user
            is_shared        boolean not null,
            domains          varchar[],             -- for specific concepts: where they apply
            definition_hash  varchar not null,
            measure_transform varchar,              -- measure-rep transform (log1p | identity); null = no raw measure
            primary key (concept, annotator, annotator_version)
        )""",
    # One row per (item, concept, annotator, version): annotate once per item, reuse for every mechanism.
    "annotations": """
        create table if not exists raw.annotations (
            item_id          varchar not null,
            concept          varchar not null,
            annotator        varchar not null,
            annotator_version varchar not null,
            measure_a        double,                -- raw measurement on response_a (offline only)
            measure_b        double,
            score_a          integer not null,      -- 1..7 Likert, 0 = not relevant
            score_b          integer not null,
            comp_value       integer not null,      -- +1 a better, -1 b better, 0 equal / not relevant / inconsistent
            score_diff       integer not null,      -- score_a - score_b, 0 if either side is not relevant
            is_relevant      boolean not null,
            is_consistent    boolean,               -- swap consistency (LLM comp-rep); null for offline
            annotated_at     timestamp not null,
            primary key (item_id, concept, annotator, annotator_version)
        )""",
    # ---- LLM method (pipelines/llm, pipelines/annotate/llm.py, pipelines/llm_apps/discover) ----
    # One row per distinct LLM request: key = sha256(model, sampling params, template, template version,
    # rendered messages). Written as soon as the call finishes (ok or failed), so a killed run loses
    # only the calls in flight. A failed row keeps the raw text and is retried on the next run.
    "llm_cache": """
        create table if not exists raw.llm_cache (
            cache_key        varchar primary key,
            stage            varchar not null,      -- relevance | comp | score | tag | propose | dedup | define ...
            template         varchar not null,
            template_version varchar not null,
            model            varchar not null,
            params_json      varchar not null,      -- sampling parameters (hashed into the key)
            item_id          varchar,
            status           varchar not null,      -- ok | failed
            raw_response     varchar,               -- the model's text (also for failures)
            parsed_json      varchar,               -- the validated answer (ok only)
            error            varchar,
            prompt_tokens    bigint not null,       -- summed over every attempt
            completion_tokens bigint not null,
            latency_ms       double,
            attempts         integer not null,
            run_id           varchar,
            created_at       timestamp not null
        )""",
    # The cost ledger: one row per HTTP attempt (retries included), with the tokens the server reported.
    "llm_ledger": """
        create table if not exists raw.llm_ledger (
            run_id           varchar not null,
            cache_key        varchar not null,
            stage            varchar not null,
            chunk_id         varchar,               -- hash of the concept chunk (names in `concepts`)
            concepts         varchar[],
            model            varchar not null,
            attempt          integer not null,
            outcome          varchar not null,      -- ok | http_429 | http_5xx | timeout | connection | malformed | truncated | incomplete | refusal
            http_status      integer,
            prompt_tokens    bigint not null,
            completion_tokens bigint not null,
            cost_usd         double not null,
            price_known      boolean not null,
            latency_ms       double,
            backoff_s        double,                -- wait before the next attempt (Retry-After honoured)
            created_at       timestamp not null
        )""",
    "llm_runs": """
        create table if not exists raw.llm_runs (
            run_id           varchar primary key,
            command          varchar not null,      -- annotate | discover
            model            varchar not null,
            base_url_host    varchar,
            started_at       timestamp not null,
            finished_at      timestamp,
            status           varchar not null,      -- running | completed | budget_stopped | failed | dry_run | interrupted (process died)
            budget_usd       double,
            calls            bigint,
            cache_hits       bigint,
            failed_calls     bigint,
            prompt_tokens    bigint,
            completion_tokens bigint,
            cost_usd         double,
            message          varchar
        )""",
    # Per-cell LLM verdicts with the raw votes of both comp-rep orders; raw.annotations (annotator 'llm')
    # is projected from here for the active catalog. Keyed by the concept's definition hash, so a reworded
    # concept is re-annotated and an unchanged one never is.
    "annotation_votes": """
        create table if not exists raw.annotation_votes (
            item_id          varchar not null,
            concept          varchar not null,
            definition_hash  varchar not null,
            annotator_version varchar not null,
            is_relevant      boolean not null,
            vote_ab          integer,               -- comp answer, original order, mapped to +1/-1/0
            vote_ba          integer,               -- comp answer with responses swapped, un-flipped to +1/-1/0
            comp_value       integer not null,      -- the vote if both orders agree, else 0
            is_consistent    boolean,
            score_a          integer not null,      -- 1..7, 0 = not relevant
            score_b          integer not null,
            relevance_key    varchar,
            comp_key_ab      varchar,
            comp_key_ba      varchar,
            score_key        varchar,
            annotated_at     timestamp not null,
            primary key (item_id, concept, definition_hash, annotator_version)
        )""",
    # Versioned concept catalogs (discovered, fixed, user); the active one is copied into raw.concepts.
    "concept_catalog": """
        create table if not exists raw.concept_catalog (
            catalog_version  varchar not null,
            concept          varchar not null,
            description      varchar not null,
            definition       varchar not null,
            origin           varchar not null,      -- discovered | fixed | user
            is_shared        boolean not null,
            domains          varchar[],
            n_domains        integer,
            n_batches        integer,
            merged_from      varchar[],
            definition_hash  varchar not null,
            created_at       timestamp not null,
            primary key (catalog_version, concept)
        )""",
    "query_tags": """
        create table if not exists raw.query_tags (
            item_id          varchar not null,
            tag_version      varchar not null,
            domain           varchar not null,
            subdomains       varchar[],
            tasks            varchar[],
            primary key (item_id, tag_version)
        )""",
}


# Operational outputs the package writes about its own runs (schema ``ops``): build records, quality results,
# evaluation results and application results. dbt reads them as the source ``ops`` (models/staging/ops/).
OPS_DDL: dict[str, str] = {
    # One row per `preflens run` / `preflens build`: lineage for every fact row's fit_id.
    "builds": """
        create table if not exists ops.builds (
            build_id         varchar primary key,
            started_at       timestamp not null,
            finished_at      timestamp,
            status           varchar not null,      -- running | success | failed
            failed_stage     varchar,
            message          varchar,
            n_items          bigint,
            n_labels         bigint,
            n_annotations    bigint,
            annotator        varchar,
            annotator_version varchar,
            package_version  varchar,
            dbt_version      varchar,
            quality_success  boolean,
            published        boolean
        )""",
    # One row per quality check per build (dbt tests, gates, the Great Expectations publication contract): what was
    # checked behind each publication decision.
    "quality_results": """
        create table if not exists ops.quality_results (
            build_id         varchar not null,
            suite            varchar not null,
            "table"          varchar not null,
            expectation_type varchar not null,
            "column"         varchar,
            success          boolean not null,
            expected         varchar,
            observed         varchar,
            unexpected_count bigint,
            unexpected_percent double,
            error            varchar,
            checked_at       timestamp default current_timestamp,
            blocking         boolean default true   -- false: a recorded check whose failure does not stop publication
        )""",
    # `preflens evaluate`: one row per protocol split x mechanism x representation x variant x test domain.
    "eval_results": """
        create table if not exists ops.eval_results (
            eval_id          varchar not null,
            build_id         varchar,
            created_at       timestamp not null,
            mechanism        varchar not null,
            mechanism_type   varchar,
            representation   varchar not null,
            variant          varchar not null,
            protocol         varchar not null,   -- in_domain | ood
            split            integer not null,   -- split index (in_domain) or seed (ood)
            held_out_domain  varchar,            -- ood only
            domain           varchar not null,   -- test domain, '__all__' = whole test set (in_domain)
            n_pairs          bigint not null,
            accuracy         double not null,
            log_loss         double not null,
            n_train          bigint,
            selected_config  varchar,
            tie_policy       varchar not null,
            n_ties_dropped   bigint,
            n_splits         integer,
            n_seeds          integer
        )""",
    # `preflens evaluate` runs (pipelines/evaluate/checkpoint.py): what a killed evaluation is resumed by. The rows of
    # a running one wait in eval_pending (eval_results' columns) and move to eval_results once every unit is done.
    "eval_runs": """
        create table if not exists ops.eval_runs (
            eval_id          varchar primary key,
            build_id         varchar,
            settings         varchar not null,   -- canonical JSON: protocol settings and the features' digest
            status           varchar not null,   -- running | complete | abandoned
            n_units          bigint,
            n_rows           bigint,
            started_at       timestamp not null,
            finished_at      timestamp
        )""",
    "eval_pending": "create table if not exists ops.eval_pending as select * from ops.eval_results limit 0",
    # `preflens apply guide|tiebreak` (the paper's two applications): one row per run, one per item.
    "app_guide_runs": """
        create table if not exists ops.app_guide_runs (
        run_id varchar primary key, judge varchar, judge_mechanism varchar, generator varchar, domain varchar,
        k integer, n_prompts integer, n integer, wins integer, ties integer, losses integer, win_rate double,
        ci_low double, ci_high double, top_concepts varchar[], fit_id varchar, seed integer, status varchar,
        created_at timestamp)""",
    "app_guide_results": """
        create table if not exists ops.app_guide_results (
        run_id varchar, item_id varchar, domain varchar, top_concepts varchar[], random_concepts varchar[],
        response_top varchar, response_random varchar, verdict_ab varchar, verdict_ba varchar, outcome varchar,
        primary key (run_id, item_id))""",
    "app_tiebreak_runs": """
        create table if not exists ops.app_tiebreak_runs (
        run_id varchar, source varchar, judge_mechanism varchar, reference_mechanism varchar, k integer,
        n_ties integer, n_resolved integer, n_correct integer, accuracy double, gain_pp double, fit_id varchar,
        seed integer, status varchar, created_at timestamp, primary key (run_id, source))""",
    "app_tiebreak_results": """
        create table if not exists ops.app_tiebreak_results (
        run_id varchar, source varchar, item_id varchar, domain varchar, concepts varchar[], verdict_ab varchar,
        verdict_ba varchar, resolved_winner varchar, reference_winner varchar, score double,
        primary key (run_id, source, item_id))""",
    # `preflens score` (pipelines/score): new pairs scored with a frozen published fit. One row per run ...
    "score_runs": """
        create table if not exists ops.score_runs (
            score_id         varchar primary key,
            fit_id           varchar not null,      -- the published fit whose weights were applied
            mechanism        varchar not null,
            representation   varchar not null,
            annotator        varchar not null,      -- the fit's annotator and version, used on the new pairs
            annotator_version varchar not null,
            files            varchar[] not null,
            input_db         varchar not null,      -- the run's own ingest file (its raw.quarantine)
            n_pairs          bigint not null,       -- pairs scored
            n_decisive       bigint not null,       -- of them with an a/b verdict of the mechanism: compared
            n_no_verdict     bigint,                -- not compared: no verdict at all in the file
            n_tie            bigint,                -- not compared: a tie of the mechanism
            n_other_mechanism bigint,               -- not compared: only other mechanisms' verdicts
            agreement        double,                -- overall agreement with those verdicts (null: none)
            fit_accuracy     double,                -- the fit's overall held-out accuracy
            drift            boolean,               -- overall drift signal (null: nothing to compare)
            scored_at        timestamp not null
        )""",
    # ... one per scored pair (winner: the mechanism's verdict in the new file, null when it carried none) ...
    "scored_pairs": """
        create table if not exists ops.scored_pairs (
            score_id         varchar not null,
            item_id          varchar not null,
            domain           varchar not null,
            winner           varchar,               -- a | b | tie | null (no verdict of the mechanism)
            predicted_winner varchar not null,      -- a | b
            prob_a           double not null,
            logit            double not null,
            used_domain_weights boolean not null,   -- false: unseen or weightless domain, scored with b alone
            agrees           boolean,               -- predicted_winner = winner (null unless decisive)
            comparison       varchar,               -- compared | no_verdict | tie | other_mechanism (score/comparison.py)
            primary key (score_id, item_id)
        )""",
    # ... one per scored pair x concept with a non-zero value and weight (py_models/lift.py) ...
    "scored_explanations": """
        create table if not exists ops.scored_explanations (
            score_id         varchar not null,
            item_id          varchar not null,
            concept          varchar not null,
            value            double not null,       -- the feature on the fit's scale (raw / feature_scale)
            weight           double not null,       -- b + s_d (b alone for unseen domains)
            contribution     double not null,       -- weight * value
            local_lift_pct   double not null,
            primary key (score_id, item_id, concept)
        )""",
    # ... and one per run x domain ('__all__' = overall): agreement against the fit's held-out accuracy.
    "score_agreement": """
        create table if not exists ops.score_agreement (
            score_id         varchar not null,
            domain           varchar not null,
            n_pairs          bigint not null,
            n_agree          bigint not null,
            agreement        double,
            agreement_ci_low double,
            agreement_ci_high double,
            fit_n_pairs      bigint,
            fit_accuracy     double,
            fit_ci_low       double,
            fit_ci_high      double,
            drift            boolean,
            primary key (score_id, domain)
        )""",
}


# Columns added after a table first shipped: (table, column, type). ``create table if not exists`` leaves an
# existing warehouse's tables as they were, so these bring them up to date (idempotent).
MIGRATIONS: tuple[tuple[str, str, str, str], ...] = (
    (RAW_SCHEMA, "concepts", "measure_transform", "varchar"),
    (OPS_SCHEMA, "quality_results", "blocking", "boolean default true"),
    (RAW_SCHEMA, "ingest_runs", "status", "varchar"),
    (RAW_SCHEMA, "ingest_runs", "reason", "varchar"),
    (OPS_SCHEMA, "score_runs", "n_no_verdict", "bigint"),
    (OPS_SCHEMA, "score_runs", "n_tie", "bigint"),
    (OPS_SCHEMA, "score_runs", "n_other_mechanism", "bigint"),
    (OPS_SCHEMA, "scored_pairs", "comparison", "varchar"),
)


# Columns that became nullable after a table first shipped: (schema, table, column).
NULLABLE_MIGRATIONS: tuple[tuple[str, str, str], ...] = ((RAW_SCHEMA, "items", "prompt"),)


def _drop_not_null(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> None:
    """Drop a NOT NULL constraint an older warehouse still has (idempotent; no-op once dropped)."""
    rows = con.execute(
        "select is_nullable from information_schema.columns where table_catalog = current_database() "
        "and table_schema = ? and table_name = ? and column_name = ?",
        [schema, table, column],
    ).fetchall()  # fetchall: a half-read result would block the connection's next statement
    if rows and rows[0][0] == "NO":
        con.execute(f"alter table {schema}.{table} alter column {column} drop not null")


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The single value a query such as ``select count(*) …`` returns (``None`` when it returns no row)."""
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def connect(db_path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the build database (creating its folder) with the raw schema in place."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path), read_only=read_only)
    if not read_only:
        ensure_schemas(con)
    return con


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create schemas ``raw`` and ``ops`` and their tables if missing, and bring older warehouses up to date:
    operational tables a warehouse still has in ``raw`` move to ``ops``, added columns are added (idempotent)."""
    for schema, ddl_by_table in ((RAW_SCHEMA, RAW_DDL), (OPS_SCHEMA, OPS_DDL)):
        con.execute(f"create schema if not exists {schema}")
        for ddl in ddl_by_table.values():
            con.execute(ddl)
    for table in OPS_DDL:
        _move_legacy_raw_table(con, table)
    for schema, table, column, dtype in MIGRATIONS:
        con.execute(f"alter table {schema}.{table} add column if not exists {column} {dtype}")
    for schema, table, column in NULLABLE_MIGRATIONS:
        _drop_not_null(con, schema, table, column)


def _move_legacy_raw_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Move the rows of ``raw.<table>`` (where warehouses before the ``ops`` schema kept it) into ``ops.<table>``."""
    found = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() and schema_name = ? "
        "and table_name = ?",
        [RAW_SCHEMA, table],
    ).fetchall()[0][0]
    if not found:
        return
    con.execute("begin transaction")
    try:
        con.execute(f"insert into {OPS_SCHEMA}.{table} by name select * from {RAW_SCHEMA}.{table}")
        con.execute(f"drop table {RAW_SCHEMA}.{table}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
