{#-
  Incremental gold: a rebuild from the earliest affected date through the as-of date.

  gold_recompute_from(relation) is that date, as a SQL expression: the earliest date touched by
  entries dbt merged after the table's last build (their new date and the date they left), and
  never later than the previous as-of date (its rows were stamped with the old as-of time and
  every entity needs the new days). NULL when nothing changed. A renamed game type rewrites
  everything: the favorite game type is stored by name.
  The model SQL and the delete below both evaluate it before the table changes, so they agree.
-#}
{% macro gold_recompute_from(relation) -%}
(
    with last_build as (
        select
            coalesce(max(updated_at), '-infinity'::timestamptz) as built_at,
            max(feature_date) as as_of_date
        from {{ relation }}
    ),
    changed_entries as (
        select
            count(*) as row_count,
            min(least(entries.entry_date, entries.previous_entry_date)) as earliest_date
        from {{ ref('stg_journal_entries') }} as entries, last_build
        where entries._loaded_at > last_build.built_at
    ),
    changed_game_types as (
        select count(*) as row_count
        from {{ ref('stg_game_types') }} as game_types, last_build
        where game_types._ingested_at > last_build.built_at
    )
    select case
        when changed_game_types.row_count > 0
            then (select min(entry_date) from {{ ref('stg_journal_entries') }})
        when changed_entries.row_count > 0
            then least(changed_entries.earliest_date, last_build.as_of_date)
    end
    from last_build, changed_entries, changed_game_types
)
{%- endmacro %}


{#- incremental_strategy='recompute_from': replace every row from gold_recompute_from on. -#}
{% macro get_incremental_recompute_from_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    where {{ config.get('recompute_column', 'feature_date') }} >= {{ gold_recompute_from(target) }};
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }};
{%- endmacro %}


{#- The start of the rows a gold model writes in this build (all of them on a full build). -#}
{% macro gold_build_from() -%}
    {%- if is_incremental() -%}
        {{ gold_recompute_from(this) }}
    {%- else -%}
        (select min(entry_date) from {{ ref('stg_journal_entries') }})
    {%- endif -%}
{%- endmacro %}


{#- Game type ids known now: the favorite game type is an argmax over one column per type. -#}
{% macro game_type_ids() %}
    {%- if execute -%}
        {%- set result = run_query(
            "select game_type_id from " ~ ref('stg_game_types') ~ " order by game_type_id"
        ) -%}
        {{ return(result.columns[0].values() | map('int') | list) }}
    {%- endif -%}
    {{ return([]) }}
{% endmacro %}
