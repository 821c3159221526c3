{#- Rows a boolean column quarantines (gold ignores them): each one needs a look upstream. -#}
{% test not_quarantined(model, column_name) %}
select *
from {{ model }}
where {{ column_name }}
{% endtest %}
