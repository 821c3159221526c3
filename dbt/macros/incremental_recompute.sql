{#-
  Incremental gold: each build rewrites every row from one start date (build_from) through the
  as-of date, and keeps the rows before it.

  The start is the earliest date any change since the table's last build touched: every date an
  entry left or entered (journal_entry_changes logs each merge and delete of
  stg_journal_entries, so any number of moves between gold builds is seen), and never later
  than the previous as-of date (that row was partial, and the days after it are new). Changed
  game types (gold stores their names) or a rebuilt staging table rewrite everything.

  The start is computed once per build, in a pre-hook, into a temporary table that the model
  SQL and the delete both read: two evaluations could disagree. Builds are serialized by the
  Dagster asset (an advisory lock around `dbt build`); the transaction lock below only keeps a
  build started by hand from interleaving with it model by model.
-#}

{#- The moment a build describes: var('as_of') (tests, backfills) or the build's start. -#}
{% macro gold_as_of() -%}
    {%- if var('as_of', none) -%}
        '{{ var('as_of') }}'::timestamptz
    {%- else -%}
        now()
    {%- endif -%}
{%- endmacro %}


{#- Entries gold reads: the staging copy without quarantined (future-dated) entries. -#}
{% macro accepted_entries() -%}
    (select * from {{ ref('stg_journal_entries') }} where is_future_dated is not true)
{%- endmacro %}


{#- The change log written by stg_journal_entries' hooks (not a model: hooks own it). -#}
{% macro entry_changes() -%}
    {{ ref('stg_journal_entries').schema }}.journal_entry_changes
{%- endmacro %}


{% macro gold_recompute_from(relation) -%}
(
    with last_build as (
        select
            coalesce(max(updated_at), '-infinity'::timestamptz) as built_at,
            min(feature_date) as first_date,
            max(feature_date) as as_of_date
        from {{ relation }}
    ),
    changes as (
        select
            bool_or(changes.entry_id is null) as rebuild_all,
            min(least(changes.from_date, changes.to_date)) as earliest_date
        from {{ entry_changes() }} as changes, last_build
        where changes.logged_at > last_build.built_at
    )
    select case
        -- everything: from the first row kept or the first entry, whichever is earlier
        when changes.rebuild_all or last_build.as_of_date is null
            or (select changed from pg_temp.gold_game_types)
            then least(
                last_build.first_date, (select min(entry_date) from {{ accepted_entries() }})
            )
        else least(changes.earliest_date, last_build.as_of_date)
    end
    from last_build, changes
)
{%- endmacro %}


{#- pre_hook of a gold model: serialize, then fix this build's bounds once. Gold stores game
    type names, so game types that differ from those of this model's last build (a digest,
    kept per model in game_type_digests, created by stg_journal_entries) make it rewrite
    everything. -#}
{% macro gold_bounds_hook() -%}
    {%- set digests = ref('stg_journal_entries').schema ~ '.game_type_digests' %}
    select pg_advisory_xact_lock(hashtext('gold:' || '{{ this }}'));
    create temporary table gold_game_types on commit drop as
    select
        current_types.digest,
        current_types.digest is distinct from (
            select digest from {{ digests }} where model = '{{ this }}'
        ) as changed
    from (
        select md5(coalesce(
            string_agg(game_type_id || ':' || game_type_name || ':' || category, ',' order by game_type_id),
            ''
        )) as digest
        from {{ ref('stg_game_types') }}
    ) as current_types;
    insert into {{ digests }} (model, digest)
    select '{{ this }}', digest from pg_temp.gold_game_types
    on conflict (model) do update set digest = excluded.digest;
    create temporary table gold_build_bounds on commit drop as
    select
        {% if is_incremental() -%}
        {{ gold_recompute_from(this) }}
        {%- else -%}
        (select min(entry_date) from {{ accepted_entries() }})
        {%- endif %} as build_from,
        {{ gold_as_of() }} as as_of_timestamp,
        ({{ gold_as_of() }} at time zone 'UTC')::date as as_of_date;
    -- one row: without statistics the planner guesses a thousand and picks whole-table plans
    analyze pg_temp.gold_build_bounds;
    -- the windows sort a row per entity and day: in memory, not in temporary files
    set local work_mem = '64MB';
{%- endmacro %}


{#- The bounds of this build (the pre-hook's temporary table). -#}
{% macro gold_bounds() -%}
    (select build_from, as_of_timestamp, as_of_date from pg_temp.gold_build_bounds)
{%- endmacro %}


{#- incremental_strategy='recompute_from': replace every row from this build's start on. -#}
{% macro get_incremental_recompute_from_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {#- no start means no accepted entry is left: every row goes -#}
    delete from {{ target }}
    where {{ config.get('recompute_column', 'feature_date') }}
        >= (select coalesce(build_from, '-infinity'::date) from pg_temp.gold_build_bounds);
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }};
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


{#- Whether this build rewrites at most the as-of date and the day before (a build within the
    day, or the day's first): a column of a gold model's bounds CTE, which sums those rows'
    windows straight from their entries. -#}
{% macro recent_only() -%}
    {{ 'bounds.as_of_date - bounds.build_from <= 1' if is_incremental() else 'false' }}
{%- endmacro %}
