{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['audience_id', 'evaluated_at'],
        full_refresh=false,
    )
}}

{#- One row per audience and instant it was evaluated at: the daily build,
    each backfilled date, each streaming micro-batch. The membership history
    needs the list: a range ends at the first later evaluation that found the
    profile out, and a backfilled date slots in between two evaluations.
    Never rebuilt by --full-refresh, like the history it indexes. -#}
{%- set audiences = audiences_to_evaluate() %}

with

members_evaluated as (

    select * from {{ ref('int_audience_members_evaluated') }}

),

evaluated_audiences as (

    {{ audience_id_rows(audiences) }}

),

member_counts as (

    select
        members_evaluated.audience_id,
        count(*) as member_count
    from members_evaluated
    group by members_evaluated.audience_id

),

final as (

    select
        evaluated_audiences.audience_id,
        {{ audience_evaluation_time() }} as evaluated_at,
        coalesce(member_counts.member_count, 0) as member_count,
        {{ audience_evaluation_kind() }} as evaluation_kind,
        {{ dbt.current_timestamp() }} as recorded_at
    from evaluated_audiences
    left join member_counts
        on member_counts.audience_id = evaluated_audiences.audience_id

)

select * from final
