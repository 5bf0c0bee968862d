"""The quality fixture build DB: a small, consistent build DB (raw tables and marts) on which every quality suite
passes, for the quality, publication and BI-access tests to break one rule at a time (``mutate``)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.core.warehouse import ensure_schemas

WEIRD = 'has "quotes" and spaces'
CONCEPTS = ("clarity", WEIRD, "safety")

_RAW_SQL = """
insert into raw.items (item_id, prompt, response_a, response_b, domain, first_ingest_id, ingested_at)
select 'i' || i, 'p' || i, 'ra' || i, 'rb' || i, case when i % 2 = 0 then 'code' else 'chat' end, 'ing1', now()
from range(1, 7) t(i);

insert into raw.labels (label_id, item_id, mechanism, mechanism_type, winner, source_file, source_line,
                        first_ingest_id, ingested_at) values
  ('l1', 'i1', 'judge:gpt-4', 'judge', 'a', 'f', 1, 'ing1', now()),
  ('l2', 'i2', 'judge:gpt-4', 'judge', 'b', 'f', 2, 'ing1', now()),
  ('l3', 'i3', 'judge:gpt-4', 'judge', 'tie', 'f', 3, 'ing1', now()),   -- not decisive
  ('l4', 'i6', 'judge:gpt-4', 'judge', 'tie', 'f', 4, 'ing1', now()),   -- item without annotations (a tie: no features needed)
  ('l5', 'i1', 'human:crowd', 'human', 'b', 'f', 5, 'ing1', now()),
  ('l6', 'i4', 'human:crowd', 'human', 'a', 'f', 6, 'ing1', now()),
  ('l7', 'i5', 'human:crowd', 'human', 'b', 'f', 7, 'ing1', now());

-- active annotator 'offline' on i1..i5; another annotator on i1 and i6 must not count
insert into raw.annotations (item_id, concept, annotator, annotator_version, score_a, score_b, comp_value,
                             score_diff, is_relevant, annotated_at)
select 'i' || i, c.concept, 'offline', 'v1',
       (i + c.k) % 8, (i * 2 + c.k) % 8,
       sign(((i + c.k) % 8) - ((i * 2 + c.k) % 8))::int,
       ((i + c.k) % 8) - ((i * 2 + c.k) % 8),
       true, now()
from range(1, 6) t(i), (values ('clarity', 0), ('has "quotes" and spaces', 1), ('safety', 3)) c(concept, k);
update raw.annotations set score_diff = greatest(-6, least(6, score_diff));
insert into raw.annotations (item_id, concept, annotator, annotator_version, score_a, score_b, comp_value,
                             score_diff, is_relevant, annotated_at)
values ('i1', 'clarity', 'llm', 'v2', 3, 4, -1, -1, true, now()),
       ('i6', 'clarity', 'llm', 'v2', 3, 4, -1, -1, true, now());
"""

_MARTS_SQL = """
create schema if not exists marts;
create table marts.fct_pair_concepts as
select item_id, concept, annotator, annotator_version, comp_value, score_a, score_b, score_diff, is_relevant
from raw.annotations where annotator = 'offline';

create table marts.fct_pair_features_comp as
pivot (select l.label_id, l.item_id, l.mechanism, l.mechanism_type, i.domain, l.winner, p.concept, p.comp_value
       from raw.labels l join raw.items i using (item_id) join marts.fct_pair_concepts p using (item_id)
       where l.winner in ('a', 'b'))
on concept using first(comp_value);

create table marts.fct_pair_features_score as
pivot (select l.label_id, l.item_id, l.mechanism, l.mechanism_type, i.domain, l.winner, p.concept, p.score_diff
       from raw.labels l join raw.items i using (item_id) join marts.fct_pair_concepts p using (item_id)
       where l.winner in ('a', 'b'))
on concept using first(score_diff);

create table marts.fct_concept_effects as
select 'fit1' as fit_id, m.mechanism, m.mechanism_type, r.representation, d.domain, c.concept,
       0.5::double as shared_weight, 0.1::double as domain_deviation, 0.6::double as total_weight,
       12.5::double as shared_lift_pct, -3.0::double as deviation_lift_pct,
       case c.concept when 'clarity' then 20.0 when 'safety' then -12.0 else 9.5 end::double as global_lift_pct,
       25 as n_pairs, true as has_domain_weights, 'none' as control, 1.0::double as feature_scale
from (values ('judge:gpt-4', 'judge'), ('human:crowd', 'human')) m(mechanism, mechanism_type),
     (values ('comp'), ('score')) r(representation),
     (values ('code'), ('chat')) d(domain),
     (select distinct concept from marts.fct_pair_concepts) c;

create table marts.fct_predictions as
select 'fit1' as fit_id, f.label_id, f.item_id, f.mechanism, f.domain, r.representation, 0 as fold,
       0.7::double as prob_a, 'a' as predicted_winner, f.winner as actual_winner, f.winner = 'a' as is_correct,
       true as used_domain_weights
from marts.fct_pair_features_comp f, (values ('comp'), ('score')) r(representation);

create table marts.fct_model_metrics as
select fit_id, mechanism, 'judge' as mechanism_type, representation, 'hmdr' as variant, domain, 'cv' as protocol,
       count(*) as n_pairs, avg(is_correct::int)::double as accuracy, 0.69::double as log_loss
from marts.fct_predictions group by all;

create table marts.fct_local_explanations as
select p.fit_id, p.label_id, p.mechanism, p.representation, c.concept,
       1.0::double as value, 0.2::double as contribution,
       4.0::double as local_lift_pct
from marts.fct_predictions p, (select distinct concept from marts.fct_pair_concepts) c;

create table marts.dim_concepts as
select concept, 'offline' as annotator, 'v1' as annotator_version, 'd' as description,
       'A high score indicates more ' || concept || '; A low score indicates less ' || concept as definition,
       'offline' as origin, 'shared' as scope, null::varchar[] as domains, md5(concept) as definition_hash,
       count(*) as n_items, avg(is_relevant::int)::double as relevance_rate
from marts.fct_pair_concepts group by concept;

create view marts.rpt_top_concepts as
select fit_id, mechanism, mechanism_type, representation, domain,
       row_number() over (partition by fit_id, mechanism, representation, domain
                          order by abs(global_lift_pct) desc, concept) as concept_rank,
       concept, case when global_lift_pct > 0 then 'rewards' else 'penalises' end as direction,
       global_lift_pct, shared_lift_pct, deviation_lift_pct, n_pairs, has_domain_weights
from preflens.marts.fct_concept_effects;

insert into ops.builds (build_id, started_at, finished_at, status, n_items, n_labels, n_annotations)
values ('b1', now() - interval 5 minute, now() - interval 4 minute, 'success', 6, 7, 17),
       ('fit1', now(), null, 'running', null, null, null);
create view marts.fct_builds as
select build_id, status, failed_stage, message, quality_success, published, n_items, n_labels, n_annotations,
       annotator, annotator_version, package_version, dbt_version, started_at, finished_at,
       date_diff('second', started_at, finished_at) as duration_seconds
from preflens.ops.builds;

-- a view, catalog-qualified like dbt writes them: must be materialised when published
create view marts.rpt_accuracy as select mechanism, avg(accuracy) as accuracy
from preflens.marts.fct_model_metrics group by mechanism;
"""

N_OFFLINE_ANNOTATIONS = 15


def build_fixture_db(path: Path) -> Path:
    """A build DB named like the real one (``preflens.duckdb``) with raw tables and consistent marts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        ensure_schemas(con)
        con.execute(_RAW_SQL)
        con.execute(_MARTS_SQL)
    finally:
        con.close()
    return path


def mutate(path: Path, sql: str) -> None:
    """Run ``sql`` on the DuckDB file at ``path`` (one write connection, closed after)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(sql)
    finally:
        con.close()
