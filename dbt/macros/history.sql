{#-
  History tables (point-in-time correctness): the as-of rows of a gold table, appended when an
  entity's values differ from its newest version. The columns compared are all but the stamps.
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
    {%- set columns = adapter.get_columns_in_relation(daily) | map(attribute='name')
        | reject('in', ['event_timestamp', 'updated_at', 'feature_date']) | list if execute else [] -%}
with as_of_rows as (
    select * from {{ daily }}
    where feature_date = (select max(feature_date) from {{ daily }})
)
select as_of_rows.*
from as_of_rows
{%- if is_incremental() %}
left join lateral (
    select * from {{ this }} as version
    where version.{{ key }} = as_of_rows.{{ key }}
    order by version.event_timestamp desc
    limit 1
) as newest on true
where newest.{{ key }} is null
    or newest.event_timestamp < as_of_rows.event_timestamp
    and (
        {%- for column in columns %}
        newest.{{ column }} is distinct from as_of_rows.{{ column }}{{ ' or' if not loop.last }}
        {%- endfor %}
    )
{%- endif %}
{%- endmacro %}


{% macro forget_gone_entities(key, daily) -%}
    delete from {{ this }} as version
    where not exists (select 1 from {{ daily }} as kept where kept.{{ key }} = version.{{ key }})
{%- endmacro %}
