{#- The optional columns of profile events and, for each, the declared column
    names that fill it (first match wins), so datasets that call revenue
    `order_total` or `revenue` land in one `revenue_amount`. -#}
{% macro profile_event_columns() -%}
    {{ return([
        {'name': 'revenue_amount', 'type': 'numeric',
         'from': ['revenue_amount', 'revenue', 'order_total']},
        {'name': 'currency', 'type': 'text', 'from': ['currency']},
        {'name': 'channel', 'type': 'text', 'from': ['channel']},
        {'name': 'store_id', 'type': 'text', 'from': ['store_id']},
        {'name': 'product_sku', 'type': 'text', 'from': ['product_sku']},
    ]) }}
{%- endmacro %}


{#- The expression filling one event column from a dataset, or a typed null. -#}
{% macro profile_event_column_sql(dataset, event_column, alias) -%}
    {%- set declared = dataset.columns | map(attribute='name') | list -%}
    {%- set matches = event_column['from'] | select('in', declared) | list -%}
    {%- if matches -%}
        cast({{ alias }}.{{ adapter.quote(matches[0]) }}
            as {{ event_column.type }})
    {%- else -%}
        cast(null as {{ event_column.type }})
    {%- endif -%}
{%- endmacro %}


{#- The event type of a dataset's rows: its declared column, else its declared
    constant. -#}
{% macro profile_event_type_sql(dataset, alias) -%}
    {%- if dataset.event_type_column -%}
        cast({{ alias }}.{{ adapter.quote(dataset.event_type_column) }} as text)
    {%- elif dataset.event_type -%}
        '{{ dataset.event_type | replace("'", "''") }}'
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "event dataset '" ~ dataset.name ~ "' declares neither event_type "
            ~ "nor event_type_column; add one to its config.meta.dataset."
        ) }}
    {%- endif -%}
{%- endmacro %}
