{#- Identity values that never link (empty, placeholder, invalid), counted per
    dataset and column so junk in an extract shows up without exposing it. -#}
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
        count(*) as rejected_count,
        min(observations.observed_at) as first_observed_at,
        max(observations.observed_at) as last_observed_at
    from observations
    group by
        observations.dataset,
        observations.identity_column,
        observations.namespace,
        observations.rejection_reason

)

select * from counted
