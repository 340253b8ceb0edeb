{#- Which audiences a build evaluates, and how, set by the callers that
    evaluate on purpose: the daily build evaluates all of them now; a backfill
    evaluates some of them as of past instants. -#}

{#- The validated audiences, or those var audience_ids lists (a list or a
    comma-separated text); an unknown id stops the build, naming it. A
    streaming evaluation takes only the audiences classified streaming. -#}
{% macro audiences_to_evaluate() -%}
    {%- set audiences = audience_definitions() -%}
    {%- if is_streaming_evaluation() -%}
        {%- set streaming_ids = streaming_audience_ids() -%}
        {%- set audiences = audiences | selectattr('id', 'in', streaming_ids)
            | list -%}
    {%- endif -%}
    {%- set wanted = var('audience_ids', []) -%}
    {%- if wanted is string -%}
        {%- set wanted = wanted.split(',') | map('trim') | reject('equalto', '')
            | list -%}
    {%- endif -%}
    {%- if not wanted or not execute -%}
        {{ return(audiences) }}
    {%- endif -%}

    {%- set known = audiences | map(attribute='id') | list -%}
    {%- for audience_id in wanted if audience_id not in known -%}
        {{ exceptions.raise_compiler_error(
            "var audience_ids names '" ~ audience_id ~ "', which no audience "
            ~ "in models/intermediate/audiences/audiences.yml has; use one of "
            ~ known | join(', ')) }}
    {%- endfor -%}
    {{ return(audiences | selectattr('id', 'in', wanted) | list) }}
{%- endmacro %}


{#- Recorded with each evaluation: 'streaming' for new event batches,
    'as_of' when a backfill named the instant, else 'build'. -#}
{% macro audience_evaluation_kind() -%}
    {%- if is_streaming_evaluation() -%}
        'streaming'
    {%- elif is_as_of_evaluation() -%}
        'as_of'
    {%- else -%}
        'build'
    {%- endif -%}
{%- endmacro %}


{#- The profiles in an audience at an instant, from the durable history: for
    "who was in this audience on 1 March", in a model, analysis or
    `dbt show --inline`. -#}
{% macro audience_members_as_of(audience_id, as_of) -%}
    select
        history.audience_id,
        history.profile_id,
        history.valid_from,
        history.valid_to
    from {{ ref('fct_audience_membership_history') }} as history
    where history.audience_id = '{{ audience_id | replace("'", "''") }}'
        and history.valid_from <= timestamptz '{{ as_of | replace("'", "''") }}'
        and (
            history.valid_to is null
            or history.valid_to > timestamptz '{{ as_of | replace("'", "''") }}'
        )
{%- endmacro %}


{#- A select of one audience_id per audience given, for a CTE body; no rows
    when the list is empty. -#}
{% macro audience_id_rows(audiences) -%}
    {%- for audience in audiences %}
    {%- if not loop.first %}
    union all
    {%- endif %}
    select cast('{{ audience.id }}' as text) as audience_id
    {%- else %}
    select cast(null as text) as audience_id
    where false
    {%- endfor %}
{%- endmacro %}


{#- True in a streaming evaluation (var streaming_evaluation), which looks only
    at the profiles of the event batches listed in ops.streaming_pending. The
    batches are read from a table, not passed as a var: dbt parses the whole
    project again whenever a var changes, which would cost every streaming run
    seconds. -#}
{% macro is_streaming_evaluation() -%}
    {{ return(var('streaming_evaluation', false) in (true, 'true', 'True', 1)) }}
{%- endmacro %}
