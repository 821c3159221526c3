{#-
  Where stg_journal_entries reads raw.journal_entries from: every row committed since its
  last build read raw, and few more.

  Ingestion stamps a row with its transaction's start (_ingested_at = now()), and a load's
  transaction lasts its whole fetch: a load that began before a build and commits after it
  carries stamps older than that build. So each build notes, just before it reads raw, the
  start of the oldest transaction then open in the warehouse (else its own statement's
  start): whatever that read cannot see is stamped at or after it, and the next build reads
  from there, a range over raw's _ingested_at index. Seeing other roles' transactions takes
  pg_read_all_stats (the stores chart grants it to transformation); without it a build
  cannot know, and reads the last hour again.
-#}

{#- The table of watermarks, beside ``staging`` (the stg_journal_entries relation). -#}
{% macro read_watermarks(staging) -%}
    {{ staging.schema }}.read_watermarks
{%- endmacro %}


{#- pre_hook of stg_journal_entries: this build's watermark, before the model reads raw. -#}
{% macro note_read_watermark() -%}
    create table if not exists {{ read_watermarks(this) }} (
        model text primary key,
        read_from timestamptz not null
    );
    create temporary table entries_read_watermark on commit drop as
    select
        least(statement_timestamp(), min(activity.xact_start))
        - case
            when bool_or(activity.query = '<insufficient privilege>') then interval '1 hour'
            else interval '0'
        end as read_from
    from pg_stat_activity as activity
    where activity.datname = current_database()
        and activity.pid <> pg_backend_pid()
        and activity.backend_type = 'client backend';
{%- endmacro %}


{#- post_hook: the watermark commits with the rows the model merged. -#}
{% macro save_read_watermark() -%}
    insert into {{ read_watermarks(this) }} (model, read_from)
    select 'stg_journal_entries', read_from from pg_temp.entries_read_watermark
    on conflict (model) do update set read_from = excluded.read_from
{%- endmacro %}


{#- The stamp from which raw rows are new to ``staging`` (the stg_journal_entries relation),
    as a literal: its last build's watermark, or (a warehouse from before watermarks) the
    newest merged stamp less an hour. A literal, not a subquery: the planner then knows how
    few rows it selects, and joins them to staging through its index instead of hashing all
    of staging (5.6 s of 16 s at 10,000,000 entries). -#}
{% macro entries_read_from(staging) -%}
    {%- if not execute -%}
        {{ return("'-infinity'::timestamptz") }}
    {%- endif -%}
    {%- set noted = adapter.get_relation(staging.database, staging.schema, 'read_watermarks') -%}
    {%- set query -%}
        select coalesce(
            {%- if noted is not none %}
            (select read_from from {{ noted }} where model = 'stg_journal_entries'),
            {%- endif %}
            (select max(_ingested_at) - interval '1 hour' from {{ staging }}),
            '-infinity'::timestamptz
        )::text
    {%- endset -%}
    {%- set read_from = run_query(query).columns[0].values()[0] -%}
    {{ return("'" ~ read_from ~ "'::timestamptz") }}
{%- endmacro %}
