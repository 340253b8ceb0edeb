{#- A device is claimed by a person each time a record on it also names a
    linked identity of theirs; the record's highest-priority identity says
    who. Quarantined devices (shared by too many people) are claimed by
    nobody. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

identities_linked as (

    select * from {{ ref('int_identities_linked') }}

),

quarantine as (

    select * from {{ ref('int_identity_quarantine') }}

),

device_observations as (

    select
        observations.source_record_id,
        observations.dataset,
        observations.node_id,
        observations.identity_value as ecid,
        observations.observed_at,
        observations._batch_id,
        observations._line_number
    from observations
    left join quarantine
        on quarantine.node_id = observations.node_id
    where observations.kind = 'device'
        and quarantine.node_id is null

),

-- A contested identity belongs to nobody in particular, so it claims
-- nothing on anyone's behalf.
person_identities as (

    select * from identities_linked
    where identities_linked.link_rule <> 'contested_own_anchor'

),

record_people as (

    select distinct on (observations.source_record_id)
        observations.source_record_id,
        person_identities.profile_id,
        person_identities.namespace
    from observations
    inner join person_identities
        on person_identities.node_id = observations.node_id
    order by
        observations.source_record_id,
        person_identities.priority,
        person_identities.identity_value

),

authentications as (

    select
        device_observations.node_id,
        device_observations.ecid,
        device_observations.observed_at as authenticated_at,
        record_people.profile_id,
        record_people.namespace as authenticated_by,
        device_observations.dataset,
        device_observations.source_record_id,
        device_observations._batch_id,
        device_observations._line_number
    from device_observations
    inner join record_people
        on record_people.source_record_id
            = device_observations.source_record_id

)

select * from authentications
