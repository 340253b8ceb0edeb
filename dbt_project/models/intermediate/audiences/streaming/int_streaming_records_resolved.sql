{#- The records of the event batches a streaming evaluation looks at
    (ops.streaming_pending, filled by cdp.streaming), each
    given the profile its highest-priority identity belongs to in the graph
    the last build made. The graph is not rebuilt: a record whose identities
    the graph does not know yet (a new person, a device never seen) gets no
    profile until the next build. Empty unless the streaming path runs. -#}

with

observations as (

    select * from {{ ref('int_identity_observations_declared') }}
    where {{ 'true' if is_streaming_evaluation() else 'false' }}
        and _batch_id in (
            select pending.batch_id
            from {{ source('ops', 'streaming_pending') }} as pending
        )

),

namespaces as (

    select * from {{ ref('identity_namespaces') }}

),

profile_identities as (

    select * from {{ ref('bdg_profile_identities') }}

),

normalised as (

    select
        observations.dataset,
        observations._batch_id,
        observations._line_number,
        observations.namespace,
        namespaces.priority,
        {{ normalize_identity('namespaces.normaliser', 'observations.raw_value') }}
            as identity_value
    from observations
    inner join namespaces
        on namespaces.namespace = observations.namespace

),

matched as (

    select
        normalised.dataset,
        normalised._batch_id,
        normalised._line_number,
        normalised.priority,
        profile_identities.profile_id
    from normalised
    inner join profile_identities
        on profile_identities.namespace = normalised.namespace
        and profile_identities.identity_value = normalised.identity_value

),

final as (

    select distinct on (matched.dataset, matched._batch_id, matched._line_number)
        matched.dataset,
        matched._batch_id,
        matched._line_number,
        matched.profile_id
    from matched
    order by
        matched.dataset,
        matched._batch_id,
        matched._line_number,
        matched.priority

)

select * from final
