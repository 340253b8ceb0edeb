{#- Audience definitions live in the dbt project as YAML, under
    `config.meta.audiences` of int_audience_members_evaluated
    (models/intermediate/audiences/audiences.yml); see docs/audiences.md. -#}

{% macro declared_audiences() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}

    {%- set node_id = 'model.' ~ project_name ~ '.int_audience_members_evaluated' -%}
    {%- set node = graph.nodes.get(node_id) -%}
    {%- set audiences = ((node.config.meta or {}).get('audiences') or [])
        if node else [] -%}

    {%- set seen = [] -%}
    {%- for audience in audiences -%}
        {%- do _check_audience(audience, seen) -%}
        {%- do seen.append(audience.id) -%}
    {%- endfor -%}
    {{ return(audiences) }}
{%- endmacro %}


{% macro _check_audience(audience, seen) -%}
    {%- if audience is not mapping -%}
        {{ audience_error('?', 'each audience must be a mapping with id, name, '
            ~ 'description, owner and rule') }}
    {%- endif -%}
    {%- set audience_id = audience.get('id') | string -%}
    {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{0,62}', audience_id) -%}
        {{ audience_error(audience_id, 'id must be lower_snake_case, starting '
            ~ 'with a letter, at most 63 characters') }}
    {%- endif -%}
    {%- if audience_id in seen -%}
        {{ audience_error(audience_id, 'id is used by two audiences; give '
            ~ 'each audience its own id') }}
    {%- endif -%}
    {%- for key in ['name', 'description', 'owner'] -%}
        {%- if audience.get(key) is not string or audience.get(key) | trim == '' -%}
            {{ audience_error(audience_id, key ~ ' is missing; give it a '
                ~ 'non-empty text') }}
        {%- endif -%}
    {%- endfor -%}
    {%- if audience.get('rule') is not mapping -%}
        {{ audience_error(audience_id, 'rule is missing; give it one of all, '
            ~ 'any, not, attribute or event') }}
    {%- endif -%}
{%- endmacro %}


{% macro audience_error(audience_id, problem) -%}
    {{ exceptions.raise_compiler_error(
        "audience '" ~ audience_id ~ "' in models/intermediate/audiences/"
        ~ "audiences.yml: " ~ problem ~ "."
    ) }}
{%- endmacro %}


{#- The instant audiences are evaluated at: var evaluation_time (backfills set
    it), else the start of this dbt invocation, so every model of one build
    agrees on "now". Validated because it is pasted into SQL. -#}
{% macro audience_evaluation_time() -%}
    {%- set value = var('evaluation_time', '') | string | trim -%}
    {%- if value == '' or value == 'None' -%}
        timestamptz '{{ run_started_at.isoformat() }}'
    {%- elif modules.re.fullmatch(
        '[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?'
        ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)?', value) -%}
        timestamptz '{{ value }}'
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "var evaluation_time is '" ~ value ~ "'; give an ISO 8601 instant "
            ~ "such as 2024-05-01T00:00:00Z, or leave it empty for now."
        ) }}
    {%- endif -%}
{%- endmacro %}
