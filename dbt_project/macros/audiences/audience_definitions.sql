{#- Audience definitions live in the dbt project as YAML, under
    `config.meta.audiences` of int_audience_members_evaluated
    (models/intermediate/audiences/audiences.yml); see docs/audiences.md. -#}

{#- Where definitions are read from: every error message names it. -#}
{% macro audience_definitions_file() -%}
    {{ return('models/intermediate/audiences/audiences.yml') }}
{%- endmacro %}


{#- The definitions as written, unchecked. Unit tests override this macro to
    give the audiences under test. -#}
{% macro declared_audiences() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}

    {%- set node = graph.nodes.get(
        'model.' ~ project_name ~ '.int_audience_members_evaluated') -%}
    {%- set meta = (node.config.meta or {}) if node else {} -%}
    {{ return(meta.get('audiences') or []) }}
{%- endmacro %}


{#- The definitions after validation: every problem of every audience is
    reported in one compiler error, before any SQL is generated. -#}
{% macro audience_definitions() -%}
    {%- set audiences = declared_audiences() -%}
    {%- set problems = audience_problems(audiences) -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error(
            audience_definitions_file() ~ ': ' ~ problems | length
            ~ (' problem' if problems | length == 1 else ' problems')
            ~ ' in the audience definitions; nothing was run.\n  - '
            ~ problems | join('\n  - ')
        ) }}
    {%- endif -%}
    {{ return(audiences) }}
{%- endmacro %}


{#- The validated definitions keyed by id, for rules that use other
    audiences. -#}
{% macro audiences_by_id(audiences) -%}
    {%- set by_id = {} -%}
    {%- for audience in audiences -%}
        {%- do by_id.update({audience.id: audience}) -%}
    {%- endfor -%}
    {{ return(by_id) }}
{%- endmacro %}


{#- An on-run-start hook (dbt_project.yml): a bad definition stops every dbt
    command before any model, seed or test runs. -#}
{% macro validate_audience_definitions() -%}
    {%- if execute -%}
        {%- set audiences = audience_definitions() -%}
        {{ log(audiences | length ~ ' audience definitions valid') }}
    {%- endif -%}
{%- endmacro %}


{#- True when var evaluation_time names an instant (a backfill), false when
    the build evaluates at its own start. -#}
{% macro is_as_of_evaluation() -%}
    {{ return(var('evaluation_time', '') | string | trim not in ('', 'None')) }}
{%- endmacro %}


{#- The instant audiences are evaluated at: var evaluation_time (backfills set
    it), else the start of this dbt invocation, so every model of one build
    agrees on "now". Validated because it is pasted into SQL. -#}
{% macro audience_evaluation_time() -%}
    {%- set value = var('evaluation_time', '') | string | trim -%}
    {%- if not is_as_of_evaluation() -%}
        timestamptz '{{ run_started_at.isoformat() }}'
    {%- elif audience_instant(value) is not none -%}
        timestamptz '{{ audience_instant(value).isoformat() }}'
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "var evaluation_time is '" ~ value ~ "'; give an ISO 8601 instant "
            ~ "such as 2024-05-01T00:00:00Z, or leave it empty for now."
        ) }}
    {%- endif -%}
{%- endmacro %}


{#- Membership history, read through a relation lookup rather than ref(): the
    history is built from the evaluated members, so a ref would be a cycle. A
    history not built yet reads as empty. Unit tests override this macro with
    rows of their own. -#}
{% macro audience_membership_history() -%}
    {%- set node = graph.nodes.get('model.' ~ project_name
        ~ '.fct_audience_membership_history') if execute else none -%}
    {%- set relation = adapter.get_relation(
        database=node.database, schema=node.schema, identifier=node.alias)
        if node else none -%}
    {%- if relation is not none -%}
        {{ return(relation | string) }}
    {%- endif -%}
    {{ return('(select cast(null as text) as audience_id, '
        ~ 'cast(null as text) as profile_id, '
        ~ 'cast(null as timestamptz) as valid_from, '
        ~ 'cast(null as timestamptz) as valid_to where false)') }}
{%- endmacro %}
