{#-
  Fit lineage: which fits the marts show, and where every fit is kept.

  shown_fits(relation): the rows of `relation` (a table with fit_id) whose fit a reader may see: the fit of a
  published build, of the build in progress (its own dbt tests and quality gates read it before it publishes),
  or of a run with no build record (dbt run by hand, the Spark flow). A build that failed or was interrupted
  (ops.builds, through stg_ops__builds) never shows its fit, even one an orphaned process finished: it stays in
  the history store (intermediate.int_fit_history_*) only. Marts built on it are views, so the filter holds at
  every read; the served copy materialises them in the publishing transaction, where the build is published.

  legacy_fit_history(mart, new_fits): on the first build of a history store, the fits an older version of the
  project kept in the table marts.<mart> (before the marts became views over the store), so no fit is lost.
-#}
{% macro shown_fits(relation) %}
select fits.*
from {{ relation }} as fits
left join {{ ref('stg_ops__builds') }} as builds on fits.fit_id = builds.build_id
where builds.build_id is null or builds.published or builds.status = 'running'
{% endmacro %}

{#- the fit id of the build being built, as a SQL string literal (the same value int_hmdr_fits is given) -#}
{% macro current_fit_id() -%}
    '{{ var('build_id', env_var('PREFLENS_BUILD_ID', 'manual')) | string | replace("'", "''") }}'
{%- endmacro %}

{% macro legacy_fit_history(mart, new_fits) -%}
    {{ return(adapter.dispatch('legacy_fit_history')(mart, new_fits)) }}
{%- endmacro %}

{% macro default__legacy_fit_history(mart, new_fits) -%}
    {%- if execute and not is_incremental() -%}
        {%- set old = adapter.get_relation(database=this.database, schema='marts', identifier=mart) -%}
        {%- if old is not none and old.is_table %}
    union all by name
    select * from {{ old }} where fit_id not in (select fit_id from {{ new_fits }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Spark has no `union all by name`: fit history an older version kept in marts tables there is not carried over -#}
{% macro spark__legacy_fit_history(mart, new_fits) -%}
{%- endmacro %}
