{#- Identity values that never link, counted per dataset, column, namespace
    and reason, so junk in an extract shows up without exposing it. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where not is_linkable

),

counted as (

    select
        observations.dataset,
        observations.identity_column,
        observations.namespace,
        observations.rejection_reason,
        observations.rejection_detail,
        count(*) as rejected_count,
        min(observations.observed_at) as first_observed_at,
        max(observations.observed_at) as last_observed_at
    from observations
    group by
        observations.dataset,
        observations.identity_column,
        observations.namespace,
        observations.rejection_reason,
        observations.rejection_detail

)

select * from counted
