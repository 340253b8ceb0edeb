{#- Which profile each source record belongs to: the profile of its
    highest-priority identity. A device identity is read as of the record's
    time, so a shared tablet's events follow whoever was logged in then. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}

),

device_authentications as (

    select * from {{ ref('int_device_authentications') }}

),

records as (

    select distinct
        observations.dataset,
        observations.source_record_id,
        observations.record_key,
        observations.observed_at,
        observations._batch_id,
        observations._line_number
    from observations

),

identity_candidates as (

    select
        observations.source_record_id,
        observations.namespace,
        identities_resolved.profile_id,
        identities_resolved.link_rule
    from observations
    inner join identities_resolved
        on identities_resolved.namespace = observations.namespace
        and identities_resolved.identity_value = observations.identity_value
    where observations.namespace <> 'ecid'

),

-- The last authentication on the device at or before the record; records
-- before the first authentication go to the first person who authenticated.
device_candidates as (

    select
        device.source_record_id,
        device.namespace,
        coalesce(
            authenticated_before.profile_id,
            first_authentication.profile_id,
            identities_resolved.profile_id
        ) as profile_id,
        case
            when authenticated_before.profile_id is not null
                then 'device_authenticated_before'
            when first_authentication.profile_id is not null
                then 'device_first_authenticated'
            else identities_resolved.link_rule
        end as link_rule
    from observations as device
    inner join identities_resolved
        on identities_resolved.namespace = device.namespace
        and identities_resolved.identity_value = device.identity_value
    left join lateral (
        select device_authentications.profile_id
        from device_authentications
        where device_authentications.ecid = device.identity_value
            and device_authentications.authenticated_at <= device.observed_at
        order by
            device_authentications.authenticated_at desc,
            device_authentications._batch_id desc,
            device_authentications._line_number desc
        limit 1
    ) as authenticated_before on true
    left join lateral (
        select device_authentications.profile_id
        from device_authentications
        where device_authentications.ecid = device.identity_value
        order by
            device_authentications.authenticated_at,
            device_authentications._batch_id,
            device_authentications._line_number
        limit 1
    ) as first_authentication on true
    where device.namespace = 'ecid'

),

candidates as (

    select * from identity_candidates
    union all
    select * from device_candidates

),

ranked_candidates as (

    select
        candidates.source_record_id,
        candidates.namespace,
        candidates.profile_id,
        candidates.link_rule,
        row_number() over (
            partition by candidates.source_record_id
            order by
                {{ identity_namespace_priority('candidates.namespace') }},
                candidates.profile_id
        ) as candidate_order
    from candidates

),

final as (

    select
        records.dataset,
        records.source_record_id,
        records.record_key,
        ranked_candidates.profile_id,
        ranked_candidates.namespace as attributed_by,
        ranked_candidates.link_rule,
        records.observed_at,
        records._batch_id,
        records._line_number
    from records
    inner join ranked_candidates
        on ranked_candidates.source_record_id = records.source_record_id
        and ranked_candidates.candidate_order = 1

)

select * from final
