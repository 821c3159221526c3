{#- Models land in exactly the schema they configure (staging, gold), not <target>_<schema>:
    the Feast feature views and the exports read gold.* by name. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
