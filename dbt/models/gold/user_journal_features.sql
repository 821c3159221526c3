{#-
  One row per user per day, from the user's first entry through the as-of date (the latest
  entry date), days without entries included. Incremental: rows from gold_recompute_from on are
  rebuilt; their 30-day windows read entries from 29 days earlier, and the kept row 30 days
  earlier carries what is older (the last entry date and the streak).
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='recompute_from',
        recompute_column='feature_date',
        unique_key=['user_id', 'feature_date'],
        on_schema_change='fail',
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
        {{ gold_build_from() }} as build_from,
        (select max(entry_date) from {{ ref('stg_journal_entries') }}) as as_of_date,
        (select max(created_at) from {{ ref('stg_journal_entries') }}) as as_of_timestamp
),

first_entries as (
    select user_id, min(entry_date) as first_entry_date
    from {{ ref('stg_journal_entries') }}
    group by user_id
),

spine as (
    select first_entries.user_id, day::date as feature_date
    from first_entries
    cross join bounds
    cross join lateral generate_series(
        greatest(first_entries.first_entry_date, bounds.build_from - 29),
        bounds.as_of_date,
        interval '1 day'
    ) as day
    where bounds.build_from is not null
),

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
    from {{ ref('stg_journal_entries') }} as entries
    cross join bounds
    where entries.entry_date >= bounds.build_from - 29
    group by entries.user_id, entries.entry_date
),

earlier as (
    {%- if is_incremental() %}
    select
        kept.user_id,
        kept.feature_date - kept.days_since_last_entry as last_entry_date,
        kept.current_streak_days as streak_days
    from {{ this }} as kept
    cross join bounds
    where kept.feature_date = bounds.build_from - 30
    {%- else %}
    select null::bigint as user_id, null::date as last_entry_date, null::integer as streak_days
    where false
    {%- endif %}
),

windowed as (
    select
        spine.user_id,
        spine.feature_date,
        coalesce(daily.entries, 0) as entries_1d,
        sum(coalesce(daily.entries, 0)) over last_7_days as entries_7d,
        sum(coalesce(daily.entries, 0)) over last_30_days as entries_30d,
        sum(daily.mood_sum) over last_30_days as mood_sum_30d,
        sum(daily.score_sum) over last_30_days as score_sum_30d,
        sum(daily.minutes) over last_30_days as minutes_30d,
        max(case when daily.entries > 0 then spine.feature_date end) over history as last_entry_date,
        max(case when daily.entries is null then spine.feature_date end) over history as last_idle_date,
        min(spine.feature_date) over (partition by spine.user_id) as window_start
        {%- for id in game_type_ids %},
        sum(coalesce(daily.game_type_{{ id }}, 0)) over last_30_days as game_type_{{ id }}_30d
        {%- endfor %}
    from spine
    left join daily
        on daily.user_id = spine.user_id and daily.entry_date = spine.feature_date
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

favorites as (
    select
        windowed.*,
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
    from windowed
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
    (
        favorites.feature_date - coalesce(favorites.last_entry_date, earlier.last_entry_date)
    )::integer as days_since_last_entry,
    (
        case
            when favorites.entries_1d = 0 then 0
            else favorites.feature_date - coalesce(
                favorites.last_idle_date,
                favorites.window_start - 1 - coalesce(earlier.streak_days, 0)
            )
        end
    )::integer as current_streak_days,
    now() as updated_at
from favorites
cross join bounds
left join earlier on earlier.user_id = favorites.user_id
left join {{ ref('stg_game_types') }} as game_types
    on game_types.game_type_id = favorites.favorite_game_type_id
where favorites.feature_date >= bounds.build_from
