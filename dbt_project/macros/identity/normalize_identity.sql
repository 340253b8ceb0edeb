{#- The linkable form of an identity value in any namespace, so the identity
    graph treats every declared identity column alike. Ids are trimmed and
    checked against the blocked list; email and phone have their own rules. -#}
{% macro normalize_identity(namespace, column) -%}
    {%- if namespace == 'email' -%}
        {{ normalize_email(column) }}
    {%- elif namespace == 'phone' -%}
        {{ normalize_phone(column) }}
    {%- else -%}
        case
            when lower(btrim({{ column }}))
                in {{ blocked_identity_values(namespace) }}
                then null
            else nullif(btrim({{ column }}), '')
        end
    {%- endif -%}
{%- endmacro %}


{#- Why a present value was not linkable: empty, placeholder or invalid; null
    when it links. Counted so that junk in an extract is visible. -#}
{% macro identity_rejection_reason(namespace, column) -%}
    case
        when {{ normalize_identity(namespace, column) }} is not null then null
        when btrim({{ column }}) = '' then 'empty'
        when lower(btrim({{ column }}))
            in {{ blocked_identity_values(namespace) }}
            then 'placeholder'
        {%- if namespace == 'phone' %}
        when {{ is_placeholder_phone(column) }} then 'placeholder'
        {%- endif %}
        else 'invalid'
    end
{%- endmacro %}


{#- Rank of a namespace when choosing a profile's anchor or a record's owner:
    unique ids first, then contact points, then devices. -#}
{% macro identity_namespace_priority(namespace_column) -%}
    case {{ namespace_column }}
        when 'crm_id' then 1
        when 'loyalty_id' then 2
        when 'email' then 3
        when 'phone' then 4
        when 'ecid' then 9
        else 5
    end
{%- endmacro %}


{#- The stable profile id of an anchor identity: the same person keeps the same
    id across rebuilds as long as their anchor identity does not change. -#}
{% macro profile_id_from_anchor(namespace_column, value_column) -%}
    md5({{ namespace_column }} || ':' || {{ value_column }})
{%- endmacro %}
