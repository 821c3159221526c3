{#-
  journal_entry_changes: one row per entry each build of stg_journal_entries merged or deleted,
  with the date it left (from_date) and the date it has now (to_date, null once deleted). The
  gold models recompute from the earliest date logged since their last build; a row with no
  entry (a rebuilt staging table) means everything. Hooks of stg_journal_entries write it in
  the model's own transaction, so a logged change and the change itself commit together.
-#}
{% macro create_entry_changes() -%}
    create table if not exists {{ this.schema }}.journal_entry_changes (
        entry_id bigint,
        from_date date,
        to_date date,
        logged_at timestamptz not null
    );
    create index if not exists journal_entry_changes_logged_at
        on {{ this.schema }}.journal_entry_changes (logged_at);
    -- the game types each gold model last built with (gold_bounds_hook): created here, once,
    -- since the gold models run in parallel and CREATE ... IF NOT EXISTS can collide
    {{ create_user_windows(this.schema) }}
    create table if not exists {{ this.schema }}.game_type_digests (
        model text primary key,
        digest text not null
    );
{%- endmacro %}


{#- pre_hook of stg_journal_entries: the merge joins the few rows read to staging through the
    entry_id index. With the default random_page_cost (4, for spinning disks) the planner
    hashes all of staging instead: 330 ms against 85 ms for 10,000 rows into 1,000,000. -#}
{% macro merge_through_index() -%}
    set local random_page_cost = 1.1
{%- endmacro %}


{#- raw.deletions (tombstones the ingestion applied), or none before the ingestion made it. -#}
{% macro deletions_relation() -%}
    {{ return(load_relation(source('raw', 'deletions'))) }}
{%- endmacro %}


{% macro log_entry_changes() -%}
    {%- set changes = this.schema ~ '.journal_entry_changes' -%}
    {%- if is_incremental() %}
    -- every row this merge wrote carries the transaction's now() as _loaded_at
    insert into {{ changes }} (entry_id, from_date, to_date, logged_at)
    select entry_id, previous_entry_date, entry_date, now()
    from {{ this }}
    where _loaded_at = now();
    {%- set deletions = deletions_relation() %}
    {%- if deletions is not none %}
    -- two deletes, not one with an "or": each is a join through one index (entry_id, user_id)
    -- from the tombstones, where the "or" made every build read all of staging
    {{ forget_entries(changes, "entries.entry_id in (select id from " ~ deletions
        ~ " where entity = 'journal_entries') and not exists (select 1 from "
        ~ source('raw', 'journal_entries') ~ " as still where still.id = entries.entry_id)") }};
    {{ forget_entries(changes, "entries.user_id in (select id from " ~ deletions
        ~ " where entity = 'users')") }};
    {%- endif %}
    {%- else %}
    insert into {{ changes }} (entry_id, from_date, to_date, logged_at) values (null, null, null, now());
    {%- endif %}
{%- endmacro %}


{#- Delete the staged entries matching ``condition`` (on alias ``entries``) and log each one's
    date as left (to_date null) in ``changes``. -#}
{% macro forget_entries(changes, condition) -%}
    with gone as (
        delete from {{ this }} as entries
        where {{ condition }}
        returning entries.entry_id, entries.entry_date
    )
    insert into {{ changes }} (entry_id, from_date, to_date, logged_at)
    select entry_id, entry_date, null, now() from gone
{%- endmacro %}
