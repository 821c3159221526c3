{#-
  The entries, typed and dated (UTC), kept as an incremental copy of raw.journal_entries: each
  build merges only the rows ingested since the last one, and removes the rows raw.deletions
  says were deleted (an entry, or every entry of a deleted user). previous_entry_date is where
  a changed entry used to be; the hooks log each merged or deleted entry's dates to
  journal_entry_changes (entry_changes.sql), from which the gold models recompute.
  _ingested_at is an ingestion transaction's start time, so a load that commits after this
  model ran can carry an older stamp than rows already merged: each build reads raw from the
  watermark the last one noted (read_watermark.sql), and merges only rows whose stamp differs
  from the merged copy.
  is_future_dated quarantines an entry dated after it was ingested (five minutes of clock
  skew allowed): gold ignores it, and a dbt test (a failing warn-level check) reports it. It
  depends only on the row, so a full refresh quarantines exactly the same entries.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='entry_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['entry_id'], 'unique': True},
            {'columns': ['entry_date']},
            {'columns': ['user_id']},
            {'columns': ['_loaded_at']},
            {'columns': ['_ingested_at']},
        ],
        meta={'changed_rows': '_loaded_at'},
        pre_hook=[
            "{{ create_entry_changes() }}",
            "{{ note_read_watermark() }}",
            "{{ merge_through_index() }}",
        ],
        post_hook=[
            "{{ log_entry_changes() }}",
            "{{ save_read_watermark() }}",
            "{{ index_quarantined('is_future_dated') }}",
            "{{ analyze_if_new() }}",
        ],
    )
}}
{%- set deletions = deletions_relation() if execute else none %}

select
    raw_entries.id as entry_id,
    raw_entries.user_id,
    raw_entries.game_type_id,
    raw_entries.created_at,
    (raw_entries.created_at at time zone 'UTC')::date as entry_date,
    raw_entries.duration_minutes,
    raw_entries.score,
    raw_entries.mood,
    raw_entries.created_at > raw_entries._ingested_at + interval '5 minutes' as is_future_dated,
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
{%- endif %}
where true
{%- if deletions is not none %}
    and raw_entries.user_id not in (select id from {{ deletions }} where entity = 'users')
{%- endif %}
{%- if is_incremental() %}
    and raw_entries._ingested_at >= {{ entries_read_from(this) }}
    and raw_entries._ingested_at is distinct from previous._ingested_at
{%- endif %}
