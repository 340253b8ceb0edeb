{#- A device (ecid) is claimed by a person each time a record on it also names
    that person: a customer_id, a loyalty_id or a contact point they own. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

identities_linked as (

    select * from {{ ref('int_identities_linked') }}

),

device_observations as (

    select
        observations.source_record_id,
        observations.dataset,
        observations.identity_value as ecid,
        observations.observed_at,
        observations._batch_id,
        observations._line_number
    from observations
    where observations.namespace = 'ecid'

),

-- Contact points that anchor their own profile do not authenticate anyone.
person_identities as (

    select * from identities_linked
    where identities_linked.link_rule not in (
        'contested_own_anchor', 'unowned_own_anchor'
    )

),

record_people as (

    select
        observations.source_record_id,
        person_identities.profile_id,
        person_identities.namespace,
        row_number() over (
            partition by observations.source_record_id
            order by
                {{ identity_namespace_priority('person_identities.namespace') }},
                person_identities.identity_value
        ) as person_order
    from observations
    inner join person_identities
        on person_identities.namespace = observations.namespace
        and person_identities.identity_value = observations.identity_value

),

authentications as (

    select
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
        and record_people.person_order = 1

)

select * from authentications
