{#-
  Tests on the rows a build changed. With var('changed_since') (the build's start, which the
  dbt_analytics asset passes), a test reads only the rows written since: a model's rows whose
  column meta.changed_rows is at or after it, and the raw entries stg_journal_entries has not
  read yet (from its watermark, read_watermark.sql). A model the build rewrote in full (first
  build, full refresh, changed game types) has every row written since, so its tests read the
  whole table; without the var every test does. Rows kept from earlier builds passed then.
  A test about the whole table (meta all_rows, e.g. "no entry is quarantined") always reads it.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- if config.get('where') -%}
        {%- do filters.append(config.get('where')) -%}
    {%- endif -%}
    {%- set changed = changed_rows(relation) -%}
    {%- if changed -%}
        {%- do filters.append(changed) -%}
    {%- endif -%}
    {%- if filters -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ filters | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{#- The predicate on the rows of ``relation`` changed since var('changed_since'), or none. -#}
{% macro changed_rows(relation) -%}
    {%- set since = var('changed_since', none) -%}
    {%- if not since or not execute or config.get('meta', {}).get('all_rows') -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.schema == relation.schema
            and node.alias == relation.identifier and node.config.meta.get('changed_rows') -%}
            {%- do return(node.config.meta.changed_rows ~ " >= '" ~ since ~ "'::timestamptz") -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set raw_entries = graph.sources['source.analytics.raw.journal_entries'] -%}
    {%- set staging = graph.nodes['model.analytics.stg_journal_entries'] -%}
    {%- if relation.schema == raw_entries.schema and relation.identifier == raw_entries.identifier -%}
        {%- set merged = adapter.get_relation(relation.database, staging.schema, staging.alias) -%}
        {%- if merged is not none -%}
            {%- do return("_ingested_at >= " ~ entries_read_from(merged)) -%}
        {%- endif -%}
    {%- endif -%}
    {%- do return(none) -%}
{%- endmacro %}


{#- post-hook: statistics for a table just created (never analyzed: reltuples -1), so the
    tests' "rows written since" filter ranges over the index instead of scanning it whole;
    later builds keep the statistics autovacuum maintains. -#}
{% macro analyze_if_new() -%}
    do $$ begin
        if (select reltuples from pg_class where oid = '{{ this }}'::regclass) < 0 then
            analyze {{ this }};
        end if;
    end $$
{%- endmacro %}
