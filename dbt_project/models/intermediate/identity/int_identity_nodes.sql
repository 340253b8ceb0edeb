{#- Every linkable identity once, with its namespace's configuration and how
    often and when it was seen: the vertices of the identity graph. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

namespaces as (

    select * from {{ ref('identity_namespaces') }}

),

nodes as (

    select
        observations.node_id,
        observations.namespace,
        observations.identity_value,
        count(*) as observation_count,
        count(distinct observations.dataset) as dataset_count,
        min(observations.observed_at) as first_seen_at,
        max(observations.observed_at) as last_seen_at
    from observations
    group by
        observations.node_id,
        observations.namespace,
        observations.identity_value

),

final as (

    select
        nodes.node_id,
        nodes.namespace,
        nodes.identity_value,
        namespaces.kind,
        namespaces.priority,
        namespaces.is_unique,
        namespaces.max_linked_identities,
        nodes.observation_count,
        nodes.dataset_count,
        nodes.first_seen_at,
        nodes.last_seen_at
    from nodes
    inner join namespaces
        on namespaces.namespace = nodes.namespace

)

select * from final
