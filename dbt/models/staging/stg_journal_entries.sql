{#-
  The entries, typed and dated (UTC), kept as an incremental copy of raw.journal_entries: each
  build merges only the rows ingested since the last one. previous_entry_date remembers where a
  changed entry used to be, so the gold models also recompute the day it left.
  _loaded_at is when dbt merged the row: the gold models' watermark.
  _ingested_at is an ingestion transaction's start time, so a load that commits after this
  model ran can carry an older stamp than rows already merged: the last hour is read again,
  and only rows whose stamp differs from the merged copy are merged.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='entry_id',
        indexes=[
            {'columns': ['entry_id'], 'unique': True},
            {'columns': ['entry_date']},
            {'columns': ['created_at']},
            {'columns': ['_loaded_at']},
        ],
    )
}}

select
    raw_entries.id as entry_id,
    raw_entries.user_id,
    raw_entries.game_type_id,
    raw_entries.created_at,
    (raw_entries.created_at at time zone 'UTC')::date as entry_date,
    raw_entries.duration_minutes,
    raw_entries.score,
    raw_entries.mood,
    {% if is_incremental() -%}
    previous.entry_date as previous_entry_date,
    {%- else -%}
    null::date as previous_entry_date,
    {%- endif %}
    raw_entries._ingested_at,
    now() as _loaded_at
from {{ source('raw', 'journal_entries') }} as raw_entries
{% if is_incremental() -%}
left join {{ this }} as previous on previous.entry_id = raw_entries.id
where raw_entries._ingested_at > (
    select coalesce(max(_ingested_at), '-infinity'::timestamptz) - interval '1 hour'
    from {{ this }}
)
    and raw_entries._ingested_at is distinct from previous._ingested_at
{%- endif %}
