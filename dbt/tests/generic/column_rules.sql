{#- The row rules of one relation in one scan: one result row per violation (a row breaking two
    rules counts twice), naming the rule broken, then the row.
      not_null: [column, ...]                        the column has a value
      ranges: {column: {min: m, max: n}}             either bound optional; a null passes
      not_later_than: {column: bound_column}         not after the bound (a future-dated fact)
    Only rows breaking some rule reach the lateral VALUES, so a clean scan costs one pass with
    a filter, not a row per rule. -#}
{% test column_rules(model, not_null=none, ranges=none, not_later_than=none) %}
{%- set rules = [] -%}
{%- for column in not_null or [] -%}
    {%- do rules.append((column ~ ' is not null', column ~ ' is null')) -%}
{%- endfor -%}
{%- for column, bounds in (ranges or {}).items() -%}
    {%- set unknown = bounds.keys() | reject('in', ['min', 'max']) | list -%}
    {%- if unknown or (bounds.get('min') is none and bounds.get('max') is none) -%}
        {{ exceptions.raise_compiler_error(
            "column_rules: the range of " ~ column ~ " takes min and/or max, got "
            ~ bounds) }}
    {%- endif -%}
    {%- set low, high = bounds.get('min'), bounds.get('max') -%}
    {%- if low is not none and high is not none -%}
        {%- do rules.append((column ~ ' between ' ~ low ~ ' and ' ~ high,
            '(' ~ column ~ ' < ' ~ low ~ ' or ' ~ column ~ ' > ' ~ high ~ ')')) -%}
    {%- elif low is not none -%}
        {%- do rules.append((column ~ ' >= ' ~ low, column ~ ' < ' ~ low)) -%}
    {%- else -%}
        {%- do rules.append((column ~ ' <= ' ~ high, column ~ ' > ' ~ high)) -%}
    {%- endif -%}
{%- endfor -%}
{%- for column, bound in (not_later_than or {}).items() -%}
    {%- do rules.append((column ~ ' <= ' ~ bound, column ~ ' > ' ~ bound)) -%}
{%- endfor -%}
{%- if not rules -%}
    {{ exceptions.raise_compiler_error(
        "column_rules: no rules; give not_null, ranges or not_later_than") }}
{%- endif -%}
select rules.rule as violated_rule, violating.*
from (
    select * from {{ model }}
    where {% for _, failed in rules %}{{ failed }}{{ ' or ' if not loop.last }}{% endfor %}
) violating
cross join lateral (
    values
    {%- for rule, failed in rules %}
        ('{{ rule | replace("'", "''") }}', {{ failed }}){{ ',' if not loop.last }}
    {%- endfor %}
) as rules(rule, failed)
where rules.failed
{% endtest %}
