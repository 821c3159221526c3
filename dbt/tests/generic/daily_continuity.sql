{#- Partitions with a missing day between their first date and the as-of date: every entity
    must have one row per day, days without activity included. The as-of date is a scalar
    subquery, evaluated once: as a joined CTE, a filtered model the planner guesses at one row
    (rows written moments ago are past its statistics) was re-read once per entity. -#}
{% test daily_continuity(model, column_name, partition_by) %}
with per_entity as (
    select {{ partition_by }}, count(*) as days, min({{ column_name }}) as first_day
    from {{ model }}
    group by {{ partition_by }}
)
select per_entity.*
from per_entity
where per_entity.days <> (select max({{ column_name }}) from {{ model }}) - per_entity.first_day + 1
{% endtest %}
