{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['audience_id', 'profile_id', 'build_evaluated_at'],
        full_refresh=false,
    )
}}

{#- One row per streaming verdict the daily build judged differently: the
    streaming path said a profile was in a streaming audience (or out), and
    the build, applying the same rule to the same profile at the streaming
    evaluation's instant, found the opposite.

    Each build takes, per streaming audience and profile, the latest verdict
    streaming recorded since the audience's previous build, and judges it at
    the streaming instant, so that time passing (a 24-hour window closing) is
    never mistaken for a disagreement. A verdict is not judged when the build
    knows something about the profile that the streaming evaluation could not
    have known: a record (CRM, loyalty; only builds read them) promoted after
    the build streaming relied on, any record or event promoted after the
    streaming evaluation, or a profile id the build no longer has (the graph
    changed). What is left differs by logic, not data. See docs/audiences.md.
    Written by builds (not backfills or streaming runs); durable. -#}
{%- set is_build = not is_streaming_evaluation() and not is_as_of_evaluation() %}
{%- set streaming_ids = streaming_audience_ids() if execute else [] %}
{%- set judged = audiences_to_evaluate() | selectattr('id', 'in', streaming_ids)
    | list if is_build else [] %}
{%- set context = audience_compile_context(audience_definitions()) %}
{#- Every rule is judged at the instant of the streaming verdict, row by row. -#}
{%- do context.update({'evaluated_at': 'profiles.streaming_evaluated_at'}) %}
{%- set record_datasets = declared_datasets(kind='record')
    | map(attribute='name') | list %}

with

streaming_results as (

    select * from {{ ref('fct_audience_streaming_results') }}

),

evaluations as (

    select * from {{ ref('fct_audience_evaluations') }}

),

records_resolved as (

    select * from {{ ref('int_records_resolved') }}

),

landed_files as (

    select * from {{ source('ops', 'landed_files') }}

),

dim_profiles as (

    select * from {{ ref('dim_profiles') }}

),

all_profile_events as (

    select * from {{ ref('fct_profile_events') }}

),

build as (

    select {{ audience_evaluation_time() }} as evaluated_at

),

judged_audiences as (

    {{ audience_id_rows(judged) }}

),

builds as (

    select
        evaluations.audience_id,
        evaluations.evaluated_at
    from evaluations
    where evaluations.evaluation_kind = 'build'

),

previous_builds as (

    select
        builds.audience_id,
        max(builds.evaluated_at) as evaluated_at
    from builds
    cross join build
    where builds.evaluated_at < build.evaluated_at
    group by builds.audience_id

),

-- What streaming last said about each profile since the previous build.
latest_verdicts as (

    select distinct on (
        streaming_results.audience_id,
        streaming_results.profile_id
    )
        streaming_results.audience_id,
        streaming_results.profile_id,
        streaming_results.evaluated_at,
        streaming_results.is_member
    from streaming_results
    inner join judged_audiences
        on judged_audiences.audience_id = streaming_results.audience_id
    cross join build
    left join previous_builds
        on previous_builds.audience_id = streaming_results.audience_id
    where streaming_results.evaluated_at < build.evaluated_at
        and streaming_results.evaluated_at
        > coalesce(previous_builds.evaluated_at, '-infinity'::timestamptz)
    order by
        streaming_results.audience_id,
        streaming_results.profile_id,
        streaming_results.evaluated_at desc

),

-- The build whose profiles and graph the streaming evaluation read.
verdict_inputs as (

    select
        latest_verdicts.audience_id,
        latest_verdicts.profile_id,
        latest_verdicts.evaluated_at,
        latest_verdicts.is_member,
        max(builds.evaluated_at) as relied_on_build_at
    from latest_verdicts
    left join builds
        on builds.audience_id = latest_verdicts.audience_id
        and builds.evaluated_at < latest_verdicts.evaluated_at
    group by
        latest_verdicts.audience_id,
        latest_verdicts.profile_id,
        latest_verdicts.evaluated_at,
        latest_verdicts.is_member

),

profile_promotions as (

    select distinct
        records_resolved.profile_id,
        records_resolved.dataset,
        landed_files.validated_at as promoted_at
    from records_resolved
    inner join landed_files
        on landed_files.batch_id = records_resolved._batch_id
    where records_resolved.profile_id in (
        select verdict_inputs.profile_id from verdict_inputs
    )

),

-- Verdicts on profiles whose data changed after streaming looked at them.
unseen_data as (

    select distinct
        verdict_inputs.audience_id,
        verdict_inputs.profile_id
    from verdict_inputs
    inner join profile_promotions
        on profile_promotions.profile_id = verdict_inputs.profile_id
    where profile_promotions.promoted_at > verdict_inputs.evaluated_at
        or (
            profile_promotions.dataset in (
                {%- for dataset in record_datasets %}
                {{ audience_literal('text', dataset) }}
                {%- if not loop.last %},{% endif %}
                {%- else %}
                null
                {%- endfor %}
            )
            and profile_promotions.promoted_at > coalesce(
                verdict_inputs.relied_on_build_at, '-infinity'::timestamptz)
        )

),

-- The profiles as the build has them, one row per verdict to judge; a profile
-- id the build no longer has drops out here.
profiles as (

    select
        dim_profiles.*,
        verdict_inputs.audience_id,
        verdict_inputs.evaluated_at as streaming_evaluated_at,
        verdict_inputs.is_member as streaming_said_in
    from verdict_inputs
    inner join dim_profiles
        on dim_profiles.profile_id = verdict_inputs.profile_id
    left join unseen_data
        on unseen_data.audience_id = verdict_inputs.audience_id
        and unseen_data.profile_id = verdict_inputs.profile_id
    where unseen_data.profile_id is null

),

-- Only the judged profiles' events: the rules' event conditions read them
-- once per verdict, at that verdict's instant.
profile_events as (

    select * from all_profile_events
    where all_profile_events.profile_id in (
        select profiles.profile_id from profiles
    )

),

judgements as (

{%- for audience in judged %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        profiles.audience_id,
        profiles.profile_id,
        profiles.streaming_evaluated_at,
        profiles.streaming_said_in,
        coalesce({{ audience_rule_sql(audience, context) }}, false)
            as build_found_in
    from profiles
    where profiles.audience_id = {{ audience_literal('text', audience.id) }}
{%- else %}

    select
        cast(null as text) as audience_id,
        cast(null as text) as profile_id,
        cast(null as timestamptz) as streaming_evaluated_at,
        cast(null as boolean) as streaming_said_in,
        cast(null as boolean) as build_found_in
    where false
{%- endfor %}

),

final as (

    select
        judgements.audience_id,
        judgements.profile_id,
        case when judgements.streaming_said_in then 'in' else 'out' end
            as streaming_said,
        case when judgements.build_found_in then 'in' else 'out' end
            as build_found,
        judgements.streaming_evaluated_at,
        build.evaluated_at as build_evaluated_at
    from judgements
    cross join build
    where judgements.streaming_said_in <> judgements.build_found_in

)

select * from final
