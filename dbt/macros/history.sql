{#-
  History tables (point-in-time correctness): the as-of rows of a gold table, appended by every
  build, stamped with its as-of time.
-#}
{#- The whole history model over gold model ``daily_name`` whose entities are keyed by ``key``. -#}
{% macro history_model(daily_name, key) -%}
    {{
        config(
            materialized='incremental',
            incremental_strategy='append',
            full_refresh=false,
            on_schema_change='fail',
            indexes=[
                {'columns': [key, 'event_timestamp'], 'unique': True},
                {'columns': ['event_timestamp']},
                {'columns': ['updated_at']},
            ],
            post_hook="{{ forget_gone_entities('" ~ key ~ "', ref('" ~ daily_name ~ "')) }}",
        )
    }}
    {{ as_of_versions(ref(daily_name), key) }}
{%- endmacro %}


{% macro as_of_versions(daily, key) -%}
with as_of_rows as (
    select * from {{ daily }}
    where feature_date = (select max(feature_date) from {{ daily }})
)
select as_of_rows.*
from as_of_rows
{%- if is_incremental() %}
-- every build's as-of rows, changed or not: each one is what Redis serves after the build,
-- which keeps every served row as fresh as the build (freshness check, key TTL); a rerun of
-- the same as-of time adds nothing
where not exists (
    select 1 from {{ this }} as version
    where version.{{ key }} = as_of_rows.{{ key }}
        and version.event_timestamp >= as_of_rows.event_timestamp
)
{%- endif %}
{%- endmacro %}


{#- post_hook: forget the entities gone from gold. Every entity gold keeps has a row on its
    as-of date (rows run through it), so the gone ones are those without. The entities come
    from the (key, event_timestamp) index, one probe each (a loose index scan): the versions
    grow with every build, the entities do not. -#}
{% macro forget_gone_entities(key, daily) -%}
    with recursive entities as (
        (select {{ key }} from {{ this }} order by {{ key }} limit 1)
        union all
        select (
            select version.{{ key }} from {{ this }} as version
            where version.{{ key }} > entities.{{ key }}
            order by version.{{ key }}
            limit 1
        )
        from entities
        where entities.{{ key }} is not null
    )
    delete from {{ this }} as version
    where version.{{ key }} in (
        select entities.{{ key }} from entities
        where entities.{{ key }} is not null
            and not exists (
                select 1 from {{ daily }} as kept
                where kept.{{ key }} = entities.{{ key }}
                    and kept.feature_date = (select max(feature_date) from {{ daily }})
            )
    )
{%- endmacro %}
