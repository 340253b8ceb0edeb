{#- The normal form of a raw identity value under its namespace's normaliser
    (a column of seeds/identity_namespaces.csv), before validity and blocked
    checks. An unknown normaliser yields null, so the value is rejected as
    invalid rather than linked unexamined. -#}
{% macro normalize_identity(normaliser_column, value_column) -%}
    case {{ normaliser_column }}
        when 'trim' then nullif(btrim({{ value_column }}), '')
        when 'email' then nullif(lower(btrim({{ value_column }})), '')
        when 'phone' then {{ phone_e164(value_column) }}
        when 'sha256_hex' then {{ email_sha256(value_column) }}
    end
{%- endmacro %}


{#- Lower-hex SHA-256 of a normalised email. A value that already is 64 hex
    digits is taken as a hash (datasets that carry hashes); anything else is
    read as an email and hashed, so both forms meet on one identity. -#}
{% macro email_sha256(value_column) -%}
    case
        when lower(btrim({{ value_column }})) ~ '^[0-9a-f]{64}$'
            then lower(btrim({{ value_column }}))
        when btrim({{ value_column }}) <> ''
            then encode(
                sha256(convert_to(lower(btrim({{ value_column }})), 'UTF8')),
                'hex'
            )
    end
{%- endmacro %}


{#- The stable profile id of an anchor identity: the same person keeps the same
    id across rebuilds as long as their anchor identity does not change. -#}
{% macro profile_id_from_anchor(namespace_column, value_column) -%}
    md5({{ namespace_column }} || ':' || {{ value_column }})
{%- endmacro %}
