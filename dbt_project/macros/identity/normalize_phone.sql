{#- The country code phones without one are read in; validated because it is
    pasted into SQL. -#}
{% macro default_phone_country_code() -%}
    {%- set code = var('default_phone_country_code') | string | trim -%}
    {%- if not modules.re.fullmatch('[1-9][0-9]{0,2}', code) -%}
        {{ exceptions.raise_compiler_error(
            "var default_phone_country_code is '" ~ code ~ "'; set it to the "
            ~ "digits of a country calling code, e.g. '1' or '44'."
        ) }}
    {%- endif -%}
    {{ code }}
{%- endmacro %}


{#- The phone rewritten to E.164 shape, before any plausibility check: a leading
    + or 00 carries its own country code, a national number gets the default
    one (dropping a trunk 0). -#}
{% macro phone_e164_candidate(column) -%}
    {%- set code = default_phone_country_code() -%}
    {%- set digits -%}
        regexp_replace({{ column }}, '[^0-9]', '', 'g')
    {%- endset -%}
    case
        when {{ digits }} = '' then null
        when btrim({{ column }}) like '+%' then '+' || {{ digits }}
        when {{ digits }} like '00%' then '+' || substr({{ digits }}, 3)
        when {{ digits }} like '{{ code }}%' and length({{ digits }}) > 10
            then '+' || {{ digits }}
        else '+{{ code }}' || regexp_replace({{ digits }}, '^0', '')
    end
{%- endmacro %}


{#- True when the phone is a placeholder: on the blocked list (as typed or in
    E.164) or made of zeros only. -#}
{% macro is_placeholder_phone(column) -%}
    (
        lower(btrim({{ column }})) in {{ blocked_identity_values('phone') }}
        or {{ phone_e164_candidate(column) }}
            in {{ blocked_identity_values('phone') }}
        or regexp_replace({{ column }}, '[^0-9]', '', 'g') ~ '^0+$'
        or {{ phone_e164_candidate(column) }}
            ~ '^\+{{ default_phone_country_code() }}0+$'
    )
{%- endmacro %}


{#- E.164 phone (+ and 8 to 15 digits; North American numbers exactly 11), or
    null when the value is implausible or a placeholder. -#}
{% macro normalize_phone(column) -%}
    case
        when {{ is_placeholder_phone(column) }} then null
        when {{ phone_e164_candidate(column) }} ~ '^\+[1-9][0-9]{7,14}$'
            and (
                {{ phone_e164_candidate(column) }} !~ '^\+1'
                or length({{ phone_e164_candidate(column) }}) = 12
            )
            then {{ phone_e164_candidate(column) }}
    end
{%- endmacro %}
