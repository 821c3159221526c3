{#-
  One row per game type per day, from the first entry date through the as-of date (the
  build's date, UTC). Active users
  in a 30-day window are counted from activity spells: a play on day d keeps its player active
  through d + 29, so plays less than 31 days apart form one spell (+1 on its first day, -1 the
  day after it ends). Incremental like user_journal_features; a build of at most the as-of date
  and the day before counts each rebuilt row's active users from its players' last plays
  (recent_active) instead of spells.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='recompute_from',
        recompute_column='feature_date',
        unique_key=['game_type_id', 'feature_date'],
        on_schema_change='fail',
        pre_hook="{{ gold_bounds_hook() }}",
        post_hook="{{ analyze_if_new() }}",
        indexes=[
            {'columns': ['game_type_id', 'feature_date'], 'unique': True},
            {'columns': ['updated_at']},
        ],
    )
}}

with bounds as (
    select
        bounds.*,
        (select min(entry_date) from {{ accepted_entries() }} as accepted) as first_entry_date,
        {{ recent_only() }} as recent_only
    from {{ gold_bounds() }} as bounds
),

recent_entries as (
    {#- a scalar bound: the planner ranges over the entry_date index -#}
    select entries.*
    from {{ accepted_entries() }} as entries
    where entries.entry_date >= (select build_from - 29 from {{ gold_bounds() }} as bounds)
),

{#- active users of each rebuilt row of a recent-only build: a player counts on day d when
    their last play on or before d lies within its 30 days (d is the as-of date or the day
    before, so two maxima per player say it); no spells -#}
recent_active as (
    select
        players.game_type_id,
        days.day as feature_date,
        count(*) filter (
            where case when days.day = bounds.as_of_date then players.last_play
                else players.last_play_before end >= days.day - 29
        ) as active_users_30d
    from (
        select
            entries.game_type_id,
            entries.user_id,
            max(entries.entry_date) as last_play,
            max(entries.entry_date) filter (
                where entries.entry_date < (select as_of_date from bounds)
            ) as last_play_before
        from recent_entries as entries
        where (select recent_only from bounds)
        group by entries.game_type_id, entries.user_id
    ) as players
    inner join bounds on true
    inner join lateral (values (bounds.as_of_date - 1), (bounds.as_of_date)) as days (day)
        on days.day >= bounds.build_from
    group by players.game_type_id, days.day
),

spine as (
    select game_types.game_type_id, day::date as feature_date
    from {{ ref('stg_game_types') }} as game_types
    cross join bounds
    cross join lateral generate_series(
        greatest(bounds.first_entry_date, bounds.build_from - 29),
        bounds.as_of_date,
        interval '1 day'
    ) as day
    where bounds.build_from is not null
),

daily as (
    select
        game_type_id,
        entry_date,
        count(*) as entries,
        sum(score) as score_sum,
        sum(mood) as mood_sum,
        sum(duration_minutes) as minutes
    from recent_entries
    group by game_type_id, entry_date
),

play_days as (
    {#- a recent-only build counts active users in recent_active instead -#}
    select distinct game_type_id, user_id, entry_date
    from recent_entries
    where not (select recent_only from bounds)
),

spell_starts as (
    select
        play_days.*,
        case
            when entry_date <= lag(entry_date) over player + 30 then 0
            else 1
        end as starts_spell
    from play_days
    window player as (partition by game_type_id, user_id order by entry_date)
),

numbered_spells as (
    select
        spell_starts.*,
        sum(starts_spell) over (
            partition by game_type_id, user_id order by entry_date
            rows between unbounded preceding and current row
        ) as spell
    from spell_starts
),

spells as (
    select game_type_id, user_id, min(entry_date) as first_day, max(entry_date) + 29 as last_day
    from numbered_spells
    group by game_type_id, user_id, spell
),

active_changes as (
    select game_type_id, day, sum(change) as change
    from (
        select game_type_id, first_day as day, 1 as change from spells
        union all
        select game_type_id, last_day + 1 as day, -1 as change from spells
    ) as changes
    group by game_type_id, day
),

windowed as (
    select
        spine.game_type_id,
        spine.feature_date,
        coalesce(daily.entries, 0) as entries_1d,
        sum(coalesce(daily.entries, 0)) over last_30_days as entries_30d,
        sum(daily.score_sum) over last_30_days as score_sum_30d,
        sum(daily.mood_sum) over last_30_days as mood_sum_30d,
        sum(daily.minutes) over last_30_days as minutes_30d,
        coalesce(
            recent.active_users_30d, sum(coalesce(active_changes.change, 0)) over history
        ) as active_users_30d
    from spine
    left join daily
        on daily.game_type_id = spine.game_type_id and daily.entry_date = spine.feature_date
    left join active_changes
        on active_changes.game_type_id = spine.game_type_id
        and active_changes.day = spine.feature_date
    left join recent_active as recent
        on recent.game_type_id = spine.game_type_id and recent.feature_date = spine.feature_date
    window
        last_30_days as (
            partition by spine.game_type_id order by spine.feature_date
            rows between 29 preceding and current row
        ),
        history as (
            partition by spine.game_type_id order by spine.feature_date
            rows between unbounded preceding and current row
        )
)

select
    windowed.game_type_id::bigint as game_type_id,
    game_types.game_type_name,
    game_types.category,
    windowed.feature_date,
    least(
        (windowed.feature_date + 1)::timestamp at time zone 'UTC', bounds.as_of_timestamp
    ) as event_timestamp,
    windowed.entries_1d::integer as entries_1d,
    windowed.entries_30d::integer as entries_30d,
    windowed.active_users_30d::integer as active_users_30d,
    windowed.score_sum_30d::double precision / nullif(windowed.entries_30d, 0) as avg_score_30d,
    windowed.mood_sum_30d::double precision / nullif(windowed.entries_30d, 0) as avg_mood_30d,
    windowed.minutes_30d::double precision / nullif(windowed.entries_30d, 0)
        as avg_duration_minutes_30d,
    now() as updated_at
from windowed
cross join bounds
join {{ ref('stg_game_types') }} as game_types on game_types.game_type_id = windowed.game_type_id
where windowed.feature_date >= bounds.build_from
