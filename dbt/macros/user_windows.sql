{#-
  user_journal_windows: the sums of each user's 30-day (and 7-day) windows on the as-of date of
  user_journal_features' last build and on the day before, kept between builds so that the
  next build carries them on instead of summing 30 days of entries again.

  A build's rewritten rows start at build_from. When that is the as-of date or the day before
  (the usual builds: within a day, or the day's first) and the windows of the day before it
  (the seed day) are kept, each rewritten day's windows are the seed's, plus the entries
  dated after the seed day, minus those that left the window: the entries of at most six days
  are read, not thirty. Any other build sums the as-of date's and the day before's windows
  from their entries.

  The kept windows of a day are right as of the last build: any entry changed since on or
  before that day moves build_from to it or earlier (journal_entry_changes), and that build
  writes both days again. Game types (their counts are an array in game_type_ids order)
  cannot change unnoticed: changed game types make the build rewrite everything.
-#}

{#- The kept windows (created with journal_entry_changes, by stg_journal_entries' hook). -#}
{% macro user_windows_relation() -%}
    {{ ref('stg_journal_entries').schema }}.user_journal_windows
{%- endmacro %}


{% macro create_user_windows(schema) -%}
    create table if not exists {{ schema }}.user_journal_windows (
        user_id bigint not null,
        feature_date date not null,
        entries_7d integer not null,
        entries_30d integer not null,
        mood_sum_30d numeric,
        score_sum_30d numeric,
        minutes_30d numeric,
        game_types_30d integer[] not null,
        primary key (feature_date, user_id)
    );
{%- endmacro %}


{#- pre_hook of user_journal_features, after gold_bounds_hook: pg_temp.user_windows, the
    windows of the days this build computes (pg_temp.user_window_days), one row per user with
    any entry in them, and when (first_entry_date, last_entry_date) its entries lie among
    those the row's sums read. -#}
{% macro user_windows_hook() -%}
    {%- set game_type_ids = game_type_ids() %}
    {%- set kept = user_windows_relation() %}
    create temporary table user_window_days on commit drop as
    select days.day, bounds.from_seed, bounds.build_from - 1 as seed_day
    from (
        select
            bounds.build_from,
            bounds.as_of_date,
            {{ recent_only() }}
                and exists (select 1 from {{ kept }} where feature_date = bounds.build_from - 1)
                as from_seed
        from pg_temp.gold_build_bounds as bounds
        where bounds.build_from is not null
    ) as bounds
    cross join lateral (values (bounds.as_of_date - 1), (bounds.as_of_date)) as days (day)
    where not bounds.from_seed or days.day >= bounds.build_from;
    analyze pg_temp.user_window_days;

    create temporary table user_windows on commit drop as
    with days as (
        select day, from_seed, seed_day from pg_temp.user_window_days
    ),

    {#- from the entries: every entry of each day's 30 days (scalar bounds: the planner ranges
        over the entry_date index) -#}
    summed as (
        select
            entries.user_id,
            days.day as feature_date,
            min(entries.entry_date) as first_entry_date,
            max(entries.entry_date) as last_entry_date,
            count(*) filter (where entries.entry_date = days.day) as entries_1d,
            count(*) filter (where entries.entry_date > days.day - 7) as entries_7d,
            count(*) as entries_30d,
            sum(entries.mood) as mood_sum_30d,
            sum(entries.score) as score_sum_30d,
            sum(entries.duration_minutes) as minutes_30d
            {%- for id in game_type_ids %},
            count(*) filter (where entries.game_type_id = {{ id }}) as game_type_{{ id }}_30d
            {%- endfor %}
        from {{ accepted_entries() }} as entries
        inner join days
            on not days.from_seed
            and entries.entry_date between days.day - 29 and days.day
        where entries.entry_date >= (select min(day) - 29 from days where not from_seed)
            and entries.entry_date <= (select max(day) from days where not from_seed)
        group by entries.user_id, days.day
    ),

    {#- from the seed: the entries of the days that entered a window since the seed day, or
        left its 30 days or its 7 days; at most two days each -#}
    moved_entries as (
        {%- for first, last in [(1, 0), (-29, -30), (-6, -7)] %}
        {{ 'union all' if not loop.first }}
        select entries.*
        from {{ accepted_entries() }} as entries
        where entries.entry_date
            between (select min(seed_day) + {{ first }} from days where from_seed)
            and (select max(day) + {{ last }} from days where from_seed)
        {%- endfor %}
    ),

    {#- +1 for an entry that entered the window, -1 for one that left it, 0 otherwise -#}
    {%- set entered = 'entries.entry_date > days.seed_day and entries.entry_date <= days.day' %}
    signed as (
        select
            entries.user_id,
            days.day as feature_date,
            days.seed_day,
            entries.entry_date,
            entries.game_type_id,
            entries.mood,
            entries.score,
            entries.duration_minutes,
            case when {{ entered }} then 1
                when entries.entry_date between days.seed_day - 29 and days.day - 30 then -1
                else 0 end as in_30d,
            case when {{ entered }} then 1
                when entries.entry_date between days.seed_day - 6 and days.day - 7 then -1
                else 0 end as in_7d
        from moved_entries as entries
        inner join days on days.from_seed
    ),

    moved as (
        select
            user_id,
            feature_date,
            min(entry_date) filter (where entry_date > seed_day) as first_entry_date,
            max(entry_date) filter (where in_30d = 1) as last_entry_date,
            count(*) filter (where entry_date = feature_date) as entries_1d,
            sum(in_7d) as entries_7d,
            sum(in_30d) as entries_30d,
            sum(in_30d * mood) as mood_sum_30d,
            sum(in_30d * score) as score_sum_30d,
            sum(in_30d * duration_minutes) as minutes_30d
            {%- for id in game_type_ids %},
            sum(in_30d) filter (where game_type_id = {{ id }}) as game_type_{{ id }}_30d
            {%- endfor %}
        from signed
        group by user_id, feature_date
    ),

    seeded as (
        select kept.*, days.day
        from {{ kept }} as kept
        inner join days on days.from_seed and kept.feature_date = days.seed_day
    )

    select
        windows.*,
        array[{% for id in game_type_ids %}windows.game_type_{{ id }}_30d{{ ', ' if not loop.last }}{% endfor %}]::integer[]
            as game_types_30d  {#- as kept: in game_type_ids order #}
    from (
    select * from summed
    union all
    select
        coalesce(seeded.user_id, moved.user_id) as user_id,
        coalesce(seeded.day, moved.feature_date) as feature_date,
        moved.first_entry_date,
        moved.last_entry_date,
        coalesce(moved.entries_1d, 0) as entries_1d,
        coalesce(seeded.entries_7d, 0) + coalesce(moved.entries_7d, 0) as entries_7d,
        coalesce(seeded.entries_30d, 0) + coalesce(moved.entries_30d, 0) as entries_30d
        {%- for column in ['mood_sum_30d', 'score_sum_30d', 'minutes_30d'] %},
        coalesce(seeded.{{ column }}, 0) + coalesce(moved.{{ column }}, 0) as {{ column }}
        {%- endfor %}
        {%- for id in game_type_ids %},
        coalesce(seeded.game_types_30d[{{ loop.index }}], 0)
            + coalesce(moved.game_type_{{ id }}_30d, 0) as game_type_{{ id }}_30d
        {%- endfor %}
    from seeded
    full join moved on moved.user_id = seeded.user_id and moved.feature_date = seeded.day
    ) as windows;
{%- endmacro %}


{#- post_hook of user_journal_features: keep the windows of its as-of date and the day before
    (those it computed replace the kept ones; a user without an entry in them has no row). -#}
{% macro save_user_windows() -%}
    {%- set kept = user_windows_relation() %}
    delete from {{ kept }}
    where feature_date in (select day from pg_temp.user_window_days)
        or feature_date not between (select as_of_date - 1 from pg_temp.gold_build_bounds)
            and (select as_of_date from pg_temp.gold_build_bounds);
    insert into {{ kept }} (
        user_id, feature_date, entries_7d, entries_30d, mood_sum_30d, score_sum_30d,
        minutes_30d, game_types_30d
    )
    select
        user_id, feature_date, entries_7d, entries_30d, mood_sum_30d, score_sum_30d,
        minutes_30d, game_types_30d
    from pg_temp.user_windows
    where entries_30d > 0
{%- endmacro %}
