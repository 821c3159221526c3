{#- Rows whose column lies after another column of the same row (a future-dated fact). -#}
{% test not_later_than(model, column_name, bound) %}
select *
from {{ model }}
where {{ column_name }} > {{ bound }}
{% endtest %}
