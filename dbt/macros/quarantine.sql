{#- post_hook of stg_journal_entries: a partial index of the quarantined entries, so that the
    not_quarantined test, which reads the whole table (it fails while one exists), reads only
    them. dbt's `indexes` config has no WHERE; created here when the table has none, under a
    name Postgres picks (a full refresh's new table gets its own while the old one, renamed,
    still holds the first). -#}
{% macro index_quarantined(column) -%}
    do $$ begin
        if not exists (
            select 1 from pg_index
            where indrelid = '{{ this }}'::regclass
                and pg_get_expr(indpred, indrelid) = '{{ column }}'
        ) then
            create index on {{ this }} (entry_id) where {{ column }};
        end if;
    end $$
{%- endmacro %}
