with

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}

),

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

evidence as (

    select
        observations.namespace,
        observations.identity_value,
        count(*) as observation_count,
        count(distinct observations.dataset) as dataset_count,
        min(observations.observed_at) as first_seen_at,
        max(observations.observed_at) as last_seen_at
    from observations
    group by
        observations.namespace,
        observations.identity_value

),

final as (

    select
        identities_resolved.namespace,
        identities_resolved.identity_value,
        identities_resolved.profile_id,
        identities_resolved.link_rule,
        identities_resolved.is_anchor,
        evidence.observation_count,
        evidence.dataset_count,
        evidence.first_seen_at,
        evidence.last_seen_at
    from identities_resolved
    inner join evidence
        on evidence.namespace = identities_resolved.namespace
        and evidence.identity_value = identities_resolved.identity_value

)

select * from final
