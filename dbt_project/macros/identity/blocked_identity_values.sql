{#- The placeholder values of one namespace, as a subquery for `in (...)`. Reading
    the seed keeps the list editable by analysts without touching SQL. -#}
{% macro blocked_identity_values(namespace) -%}
    (
        select blocked.value
        from {{ ref('identity_blocked_values') }} as blocked
        where blocked.namespace in ('{{ namespace }}', 'any')
    )
{%- endmacro %}
