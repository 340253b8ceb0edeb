{#- Trimmed, lower-cased email, or null when it is not a plausible address or is
    a known placeholder: junk values must never link two people. -#}
{% macro normalize_email(column) -%}
    case
        when lower(btrim({{ column }})) in {{ blocked_identity_values('email') }}
            then null
        when lower(btrim({{ column }}))
            ~ '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$'
            then lower(btrim({{ column }}))
    end
{%- endmacro %}
