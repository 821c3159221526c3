{#- Partitions with a missing day between their first date and the as-of date: every entity
    must have one row per day, days without activity included. -#}
{% test daily_continuity(model, column_name, partition_by) %}
with per_entity as (
    select {{ partition_by }}, count(*) as days, min({{ column_name }}) as first_day
    from {{ model }}
    group by {{ partition_by }}
),
as_of as (
    select max({{ column_name }}) as last_day from {{ model }}
)
select per_entity.*
from per_entity cross join as_of
where per_entity.days <> as_of.last_day - per_entity.first_day + 1
{% endtest %}
