"""The quality fixture build DB: a small, consistent build DB (raw tables and every published mart, built by hand,
not by dbt) on which every dbt test of the marts, every quality gate and the publication contract pass, for the
quality, publication and BI-access tests to break one rule at a time (``mutate``)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pipelines.core.config import Paths
from pipelines.core.warehouse import ensure_schemas

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.build.quality import QualityResult

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

# The other published relations (dbt models of schema marts), so that the publication contract holds: each with
# its documented columns; the evaluation marts and the skips are empty, as in a build without `preflens evaluate`.
_MORE_MARTS_SQL = """
alter table marts.dim_concepts add column measure_transform varchar default 'identity';
alter table marts.fct_concept_effects add column total_weight_ci_low double;
alter table marts.fct_concept_effects add column total_weight_ci_high double;
alter table marts.fct_concept_effects add column global_lift_ci_low double;
alter table marts.fct_concept_effects add column global_lift_ci_high double;
alter table marts.fct_concept_effects add column selection_frequency double;
alter table marts.fct_concept_effects add column n_bootstrap integer default 0;

create table marts.fct_pair_features_measure as
pivot (select l.label_id, l.item_id, l.mechanism, l.mechanism_type, i.domain, l.winner, p.concept,
              p.score_diff * 0.5 as measure_diff
       from raw.labels l join raw.items i using (item_id) join marts.fct_pair_concepts p using (item_id)
       where l.winner in ('a', 'b'))
on concept using first(measure_diff);

-- overall rows of the concept model and of the length-only baseline: the concept model beats length alone
insert into marts.fct_model_metrics
select fit_id, mechanism, 'judge', representation, v.variant, '__all__', 'cv', count(*),
       case v.variant when 'hmdr' then 0.75 else 0.5 end, 0.6
from marts.fct_predictions, (values ('hmdr'), ('length_only')) v(variant) group by all;

create table marts.dim_items as
select item_id, domain, 'fixture' as source, prompt, response_a, response_b, null as model_a, null as model_b,
       length(response_a) as response_a_chars, length(response_b) as response_b_chars, ingested_at
from raw.items;
create table marts.dim_domains as
select domain, 'fixture' as domain_source, count(*) as n_items, 0 as n_labels, 0 as n_mechanisms
from raw.items group by domain;
create table marts.dim_mechanisms as
select mechanism, any_value(mechanism_type) as mechanism_type, count(*) as n_labels,
       count(*) filter (where winner <> 'tie') as n_decisive, count(*) filter (where winner = 'tie') as n_ties,
       count(distinct item_id) as n_items
from raw.labels group by mechanism;
create table marts.dim_annotators as
select annotator, annotator_version, case when annotator = 'offline' then 'offline' else 'llm' end as annotator_kind,
       count(distinct concept) as n_concepts, count(distinct item_id) as n_items, count(*) as n_annotations,
       avg(is_relevant::int)::double as relevance_rate
from raw.annotations group by annotator, annotator_version;

create table marts.fct_fit_configs as
select distinct fit_id, mechanism, mechanism_type, representation, 'fixed' as selection, 0.5::double as alpha,
       0.03125::double as lambda_shared, 0.015625::double as lambda_domain, 0.5::double as pooling,
       0.6::double as cv_log_loss, 25 as n_pairs, 'none' as control, now() as fitted_at
from marts.fct_concept_effects;
create table marts.dim_latest_fit as
select fit_id, max(fitted_at) as fitted_at, count(*) as n_models from marts.fct_fit_configs group by fit_id;
create table marts.fct_fit_skips (fit_id varchar, mechanism varchar, representation varchar, reason varchar);

create view marts.rpt_model_baselines as
select fit_id, mechanism, mechanism_type, representation,
       max(n_pairs) filter (where variant = 'hmdr') as n_pairs,
       max(accuracy) filter (where variant = 'hmdr') as accuracy,
       max(accuracy) filter (where variant = 'length_only') as accuracy_length_only,
       null::double as accuracy_style,
       max(accuracy) filter (where variant = 'hmdr') - max(accuracy) filter (where variant = 'length_only')
         as gain_over_length_only,
       null::double as gain_over_style,
       coalesce(max(accuracy) filter (where variant = 'hmdr') > max(accuracy) filter (where variant = 'length_only'),
                false) as beats_length_only
from preflens.marts.fct_model_metrics where domain = '__all__' group by all;
create view marts.rpt_domain_specificity as
select fit_id, mechanism, mechanism_type, representation, domain, concept, shared_lift_pct, deviation_lift_pct,
       global_lift_pct, case when sign(deviation_lift_pct) = sign(shared_lift_pct) then 'stronger here'
                             else 'weaker here' end as departure, n_pairs
from preflens.marts.fct_concept_effects where deviation_lift_pct <> 0;
create table marts.fct_mechanism_contrasts (
    fit_id varchar, mechanism_a varchar, mechanism_type_a varchar, mechanism_b varchar, mechanism_type_b varchar,
    representation varchar, domain varchar, concept varchar, weight_a double, weight_b double, estimate double,
    ci_low double, ci_high double, contrast_lift_pct double, contrast_lift_ci_low double,
    contrast_lift_ci_high double, standard_error double, selection_frequency double, p_value double,
    p_adjusted double, distinguishable boolean, n_shared_items bigint, n_pairs_a bigint, n_pairs_b bigint,
    n_bootstrap bigint, ci_level double, fdr double, feature_scale double, alpha double, lambda_shared double,
    lambda_domain double, pooling double
);
create table marts.fct_scored_pairs (
    score_id varchar, fit_id varchar, mechanism varchar, representation varchar, annotator_version varchar,
    scored_at timestamp, item_id varchar, domain varchar, winner varchar, predicted_winner varchar, prob_a double,
    logit double, used_domain_weights boolean, agrees boolean, comparison varchar
);
create table marts.fct_scored_explanations (
    score_id varchar, fit_id varchar, mechanism varchar, representation varchar, item_id varchar, concept varchar,
    value double, weight double, contribution double, local_lift_pct double
);
create table marts.fct_score_agreement (
    score_id varchar, fit_id varchar, mechanism varchar, representation varchar, scored_at timestamp, domain varchar,
    n_pairs bigint, n_agree bigint, agreement double, agreement_ci_low double, agreement_ci_high double,
    fit_n_pairs bigint, fit_accuracy double, fit_ci_low double, fit_ci_high double, drift boolean
);
create table marts.rpt_concept_drift (
    fit_id varchar, built_at timestamp, build_number bigint, mechanism varchar, mechanism_type varchar,
    representation varchar, control varchar, domain varchar, concept varchar, total_weight double,
    total_weight_ci_low double, total_weight_ci_high double, global_lift_pct double, global_lift_ci_low double,
    global_lift_ci_high double, selection_frequency double, previous_fit_id varchar, previous_total_weight double,
    previous_global_lift_pct double, weight_change double, lift_change double, intervals_overlap boolean
);
create view marts.rpt_mechanism_contrast as
select a.fit_id, a.representation, a.domain, a.concept, a.mechanism as mechanism_a, b.mechanism as mechanism_b,
       a.global_lift_pct - b.global_lift_pct as lift_diff_pct, null::double as lift_diff_ci_low,
       null::double as lift_diff_ci_high, false as distinguishable, 'not distinguishable' as verdict
from preflens.marts.fct_concept_effects a join preflens.marts.fct_concept_effects b
  on a.representation = b.representation and a.domain = b.domain and a.concept = b.concept
 and a.mechanism <> b.mechanism;
create view marts.rpt_mechanism_agreement as
select a.mechanism as mechanism_a, b.mechanism as mechanism_b, count(*) as n_shared_items,
       avg((a.winner = b.winner)::int)::double as agreement_rate
from preflens.raw.labels a join preflens.raw.labels b on a.item_id = b.item_id and a.mechanism <> b.mechanism
group by all;
create view marts.rpt_annotation_quality as
select annotator, annotator_version, concept, count(*) as n_items, avg(is_relevant::int)::double as relevance_rate
from preflens.raw.annotations group by all;

create table marts.fct_eval_results (
    eval_id varchar, build_id varchar, mechanism varchar, mechanism_type varchar, representation varchar,
    variant varchar, protocol varchar, split varchar, domain varchar, held_out_domain varchar, n_pairs integer,
    accuracy double, log_loss double, n_train integer, selected_config varchar, tie_policy varchar,
    n_ties_dropped integer, created_at timestamp);
create table marts.rpt_model_comparison (
    eval_id varchar, mechanism varchar, mechanism_type varchar, representation varchar, variant varchar,
    protocol varchar, n_runs integer, mean_accuracy double, sd_accuracy double, mean_log_loss double,
    n_test_pairs integer, tie_policy varchar, accuracy_ci_low double, accuracy_ci_high double, gap_to_best double);
create view marts.fct_quality_results as
select build_id, suite, "table" as table_name, expectation_type, "column" as column_name, success, expected,
       observed, unexpected_count, unexpected_percent, error, checked_at
from preflens.ops.quality_results;
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
        con.execute(_MORE_MARTS_SQL)
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


def dbt_test(db: Path, *select: str, dbt_vars: dict[str, object] | None = None) -> list[QualityResult]:
    """Run the data tests ``select`` (dbt selection syntax) with real dbt on the fixture DB at ``db``
    (``<warehouse>/preflens.duckdb``) and return what they found, as the build records it. A failing test is a
    result, not an exception."""
    from pipelines.build.dbt_runner import DbtError, run_dbt
    from pipelines.build.quality import read_test_results

    paths = Paths(warehouse=db.parent)
    args = ["test", "--resource-type", "test", "--select", *select]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    started = time.time()
    with contextlib.suppress(DbtError):
        run_dbt(args, paths, "fixture-tests")
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = read_test_results(paths.dbt_target_dir, since=started, con=con)
    finally:
        con.close()
    assert results is not None, f"dbt ran no test (see {paths.dbt_target_dir / 'logs'})"
    return results


def audit_rows(db: Path, result: QualityResult) -> list[tuple]:
    """The failing rows a dbt test stored (``observed`` names its audit table), read from the fixture DB."""
    relation = result.observed.rsplit(" in ", 1)[-1]
    schema, name = relation.split(".", 1)
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f'select * from "{schema}"."{name}" order by all').fetchall()
    finally:
        con.close()
