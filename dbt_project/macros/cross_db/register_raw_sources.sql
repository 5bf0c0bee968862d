{#-
  Where the `raw` and `ops` sources live. DuckDB: tables in schemas raw and ops of the build file (written by Python,
  DDL in pipelines/core/warehouse.py), nothing to do. Spark: a Parquet landing zone, one `<table>.parquet` per table (var
  `raw_parquet_dir`, default env PREFLENS_RAW_PARQUET_DIR, an absolute path or URI); this on-run-start hook
  (re)registers each source of `raw` and `ops` as an external table over its file, so source(), source tests and
  lineage are the same on both engines. Dropping an external table never deletes its files.
-#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}
{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- set landing = var('raw_parquet_dir', '') | string | trim -%}
    {%- if execute and landing -%}
        {%- set landing = landing.rstrip('/') -%}
        {#- list the landing zone (also on object storage); a raw table without a file stays unregistered,
            like a raw table DuckDB has not created yet (e.g. eval_results before the first evaluation) -#}
        {%- set pattern = (landing ~ '/*.parquet') | replace('`', '``') -%}
        {%- set listing = run_query('select distinct path from binaryFile.`' ~ pattern ~ '`') -%}
        {%- set files = (listing.columns[0].values() | join('\n')) ~ '\n' -%}
        {%- for schema in ['raw', 'ops'] -%}
            {%- do run_query('create database if not exists ' ~ quote_identifier(schema)) -%}
        {%- endfor -%}
        {%- for node in graph.sources.values() if node.source_name in ['raw', 'ops'] -%}
            {%- set suffix = '/' ~ node.identifier ~ '.parquet' -%}
            {%- if (suffix ~ '\n') in files or (suffix ~ '/') in files -%}
            {%- set relation = quote_identifier(node.schema) ~ '.' ~ quote_identifier(node.identifier) -%}
            {%- set location = (landing ~ '/' ~ node.identifier ~ '.parquet') | replace('\\', '\\\\') | replace("'", "\\'") -%}
            {%- do run_query('drop table if exists ' ~ relation) -%}
            {%- do run_query('create table ' ~ relation ~ " using parquet location '" ~ location ~ "'") -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
