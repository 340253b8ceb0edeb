{#- Layers land in schemas named after the layer (staging, marts, ...) rather than
    dbt's default "<target schema>_<layer>", so analysts query stable names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
