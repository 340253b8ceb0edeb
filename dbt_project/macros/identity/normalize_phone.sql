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


{#- The phone rewritten to E.164 shape, before any plausibility check. An
    extension is dropped (it reaches the same line); a leading + or an
    international prefix (00, or 011 under a North American default) carries its own
    country code; digits that already start with the default code and
    are longer than a national number keep it; a national number gets the
    default code, dropping a trunk 0. -#}
{% macro phone_e164_candidate(column) -%}
    {%- set code = default_phone_country_code() -%}
    {%- set without_extension -%}
        regexp_replace(
            btrim({{ column }}), '\s*(ext\.?|extension|x|#)\s*[0-9]+$', '', 'i'
        )
    {%- endset -%}
    {%- set digits -%}
        regexp_replace({{ without_extension }}, '[^0-9]', '', 'g')
    {%- endset -%}
    case
        when {{ digits }} = '' then null
        when {{ without_extension }} ~ '^(tel:)?\s*\+' then '+' || {{ digits }}
        when {{ digits }} like '00%' then '+' || substr({{ digits }}, 3)
        {%- if code == '1' %}
        when {{ digits }} like '011%' and length({{ digits }}) > 11
            then '+' || substr({{ digits }}, 4)
        {%- endif %}
        when {{ digits }} like '{{ code }}%' and length({{ digits }}) > 10
            then '+' || {{ digits }}
        else '+{{ code }}' || regexp_replace({{ digits }}, '^0', '')
    end
{%- endmacro %}


{#- E.164 phone, or null when implausible: 8 to 15 digits after the +, and a
    North American number (+1) must have a 3-digit area code and exchange that
    do not start with 0 or 1, as the numbering plan requires. -#}
{% macro phone_e164(column) -%}
    case
        when {{ phone_e164_candidate(column) }} ~ '^\+1'
            and {{ phone_e164_candidate(column) }}
                !~ '^\+1[2-9][0-9]{2}[2-9][0-9]{6}$'
            then null
        when {{ phone_e164_candidate(column) }} ~ '^\+[1-9][0-9]{7,14}$'
            then {{ phone_e164_candidate(column) }}
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
    )
{%- endmacro %}


{#- E.164 phone, or null when the value is implausible or a placeholder; the
    staging models use it to show a clean phone next to the raw one. -#}
{% macro normalize_phone(column) -%}
    case
        when {{ is_placeholder_phone(column) }} then null
        else {{ phone_e164(column) }}
    end
{%- endmacro %}
