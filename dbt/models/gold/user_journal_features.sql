{#-
  One row per user per day, from the user's first entry through the as-of date (the build's
  date, UTC), days without entries included: a row for today exists even before today's first
  entry, so recency grows and the windows drop old entries without new data. Semantics of each
  column: gold.yml. Incremental: rows from the build's start (incremental_recompute.sql) on are
  rebuilt; their windows read entries from 29 days earlier, and the kept row 30 days earlier
  carries what is older (the last entry date and the streak). A build that rebuilds at most the
  as-of date and the day before (within a day, or the first after midnight: the usual builds)
  takes each row's windows from user_windows.sql instead (recent_windows: carried on from the
  day before's, or summed from their entries), and the kept row the day before its start
  carries what is older: no row per day for the 29 days before.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='recompute_from',
        recompute_column='feature_date',
        unique_key=['user_id', 'feature_date'],
        on_schema_change='fail',
        pre_hook=["{{ gold_bounds_hook() }}", "{{ user_windows_hook() }}"],
        post_hook=["{{ save_user_windows() }}", "{{ analyze_if_new() }}"],
        indexes=[
            {'columns': ['user_id', 'feature_date'], 'unique': True},
            {'columns': ['feature_date']},
            {'columns': ['updated_at']},
        ],
    )
}}
{%- set game_type_ids = game_type_ids() %}

with bounds as (
    select
        bounds.*,
        {{ recent_only() }} as recent_only
    from {{ gold_bounds() }} as bounds
),

seed as (
    {#- the day of the kept row that carries what is older than the rebuilt rows -#}
    select case when recent_only then build_from - 1 else build_from - 30 end as seed_day
    from bounds
),

{#- scalar subqueries, not joins: the planner then ranges over the entry_date and feature_date
    indexes instead of scanning every entry and every kept row -#}
daily as (
    select
        entries.user_id,
        entries.entry_date,
        count(*) as entries,
        sum(entries.mood) as mood_sum,
        sum(entries.score) as score_sum,
        sum(entries.duration_minutes) as minutes
        {%- for id in game_type_ids %},
        count(*) filter (where entries.game_type_id = {{ id }}) as game_type_{{ id }}
        {%- endfor %}
    from {{ accepted_entries() }} as entries
    where entries.entry_date >= (select build_from - 29 from {{ gold_bounds() }} as bounds)
        and not (select recent_only from bounds)
    group by entries.user_id, entries.entry_date
),

{#- the windows of each rebuilt row of a recent-only build: carried on from the kept windows
    of the day before, or summed from their entries (user_windows.sql) -#}
recent_windows as (
    select windows.*
    from pg_temp.user_windows as windows
    where (select recent_only from bounds)
        and windows.feature_date >= (select build_from from bounds)
),

earlier as (
    {#- the kept row on the seed day: its last entry and the run of days it ends -#}
    {%- if is_incremental() %}
    select
        kept.user_id,
        kept.feature_date - kept.days_since_last_entry as last_entry_date,
        case when kept.days_since_last_entry = 0 then kept.current_streak_days else 0 end
            as run_days
    from {{ this }} as kept
    where kept.feature_date = (select seed_day from seed)
    {%- else %}
    select null::bigint as user_id, null::date as last_entry_date, null::integer as run_days
    where false
    {%- endif %}
),

{#- each user's first day after the seed day: a user with a kept row on it had entries before
    (rows run without a gap from the first entry), every other user's first entry lies after -#}
window_starts as (
    select
        coalesce(earlier.user_id, first_days.user_id) as user_id,
        case
            when earlier.user_id is not null then seed.seed_day + 1
            else first_days.first_entry_date
        end as window_start
    from (
        select user_id, min(entry_date) as first_entry_date from daily group by user_id
        union all
        select user_id, min(first_entry_date) from recent_windows group by user_id
    ) as first_days
    full join earlier on earlier.user_id = first_days.user_id
    cross join seed
),

spine as (
    select window_starts.user_id, day::date as feature_date, window_starts.window_start
    from window_starts
    cross join bounds
    cross join lateral generate_series(
        window_starts.window_start, bounds.as_of_date, interval '1 day'
    ) as day
    where bounds.build_from is not null
),

windowed as (
    {#- a recent-only build has its sums in recent_windows (daily is empty); any other build sums
        each row's days (recent_windows is empty) -#}
    select
        spine.user_id,
        spine.feature_date,
        spine.window_start,
        coalesce(daily.entries, recent.entries_1d, 0) as entries_1d,
        coalesce(recent.entries_7d, sum(coalesce(daily.entries, 0)) over last_7_days) as entries_7d,
        coalesce(recent.entries_30d, sum(coalesce(daily.entries, 0)) over last_30_days)
            as entries_30d,
        coalesce(recent.mood_sum_30d, sum(daily.mood_sum) over last_30_days) as mood_sum_30d,
        coalesce(recent.score_sum_30d, sum(daily.score_sum) over last_30_days) as score_sum_30d,
        coalesce(recent.minutes_30d, sum(daily.minutes) over last_30_days) as minutes_30d,
        coalesce(
            recent.last_entry_date,
            max(case when daily.entries > 0 then spine.feature_date end) over history
        ) as last_entry_date,
        max(
            case when coalesce(daily.entries, recent.entries_1d, 0) = 0 then spine.feature_date end
        ) over history as last_idle_date
        {%- for id in game_type_ids %},
        coalesce(
            recent.game_type_{{ id }}_30d,
            sum(coalesce(daily.game_type_{{ id }}, 0)) over last_30_days
        ) as game_type_{{ id }}_30d
        {%- endfor %}
    from spine
    left join daily
        on daily.user_id = spine.user_id and daily.entry_date = spine.feature_date
    left join recent_windows as recent
        on recent.user_id = spine.user_id and recent.feature_date = spine.feature_date
    window
        last_7_days as (
            partition by spine.user_id order by spine.feature_date
            rows between 6 preceding and current row
        ),
        last_30_days as (
            partition by spine.user_id order by spine.feature_date
            rows between 29 preceding and current row
        ),
        history as (
            partition by spine.user_id order by spine.feature_date
            rows between unbounded preceding and current row
        )
),

runs as (
    {#- run_days: consecutive days with an entry ending on this day (0 on a day without) -#}
    select
        windowed.*,
        coalesce(windowed.last_entry_date, earlier.last_entry_date) as any_last_entry_date,
        coalesce(earlier.run_days, 0) as carried_run_days,
        case
            when windowed.entries_1d = 0 then 0
            else windowed.feature_date - coalesce(
                windowed.last_idle_date,
                windowed.window_start - 1 - coalesce(earlier.run_days, 0)
            )
        end as run_days
    from windowed
    left join earlier on earlier.user_id = windowed.user_id
),

favorites as (
    select
        runs.*,
        -- a streak is alive while its last day is today or yesterday
        case
            when runs.entries_1d > 0 then runs.run_days
            else lag(runs.run_days, 1, runs.carried_run_days) over (
                partition by runs.user_id order by runs.feature_date
            )
        end as streak_days,
        {%- if game_type_ids %}
        -- the most played type in the window; ties go to the smallest id (listed first)
        case greatest({% for id in game_type_ids %}game_type_{{ id }}_30d{{ ", " if not loop.last }}{% endfor %})
            when 0 then null
            {%- for id in game_type_ids %}
            when game_type_{{ id }}_30d then {{ id }}
            {%- endfor %}
        end as favorite_game_type_id
        {%- else %}
        null::bigint as favorite_game_type_id
        {%- endif %}
    from runs
)

select
    favorites.user_id::bigint as user_id,
    favorites.feature_date,
    least(
        (favorites.feature_date + 1)::timestamp at time zone 'UTC', bounds.as_of_timestamp
    ) as event_timestamp,
    favorites.entries_7d::integer as entries_7d,
    favorites.entries_30d::integer as entries_30d,
    favorites.mood_sum_30d::double precision / nullif(favorites.entries_30d, 0) as avg_mood_30d,
    favorites.score_sum_30d::double precision / nullif(favorites.entries_30d, 0) as avg_score_30d,
    coalesce(favorites.minutes_30d, 0)::bigint as minutes_30d,
    game_types.game_type_name as favorite_game_type,
    (favorites.feature_date - favorites.any_last_entry_date)::integer as days_since_last_entry,
    favorites.streak_days::integer as current_streak_days,
    now() as updated_at
from favorites
cross join bounds
left join {{ ref('stg_game_types') }} as game_types
    on game_types.game_type_id = favorites.favorite_game_type_id
where favorites.feature_date >= bounds.build_from
