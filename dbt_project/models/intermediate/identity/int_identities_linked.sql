{#- Links every non-device identity to the person it belongs to, applying the
    rules in docs/identity.md in order: crm ids anchor people, loyalty ids join
    one of them or anchor their own, contact points join their one owner. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

unique_id_observations as (

    select
        observations.source_record_id,
        observations.namespace,
        observations.identity_value,
        observations.is_record_key,
        observations.observed_at,
        observations._batch_id,
        observations._line_number
    from observations
    where observations.namespace in ('crm_id', 'loyalty_id')

),

contact_observations as (

    select
        observations.source_record_id,
        observations.namespace,
        observations.identity_value
    from observations
    where observations.namespace not in ('crm_id', 'loyalty_id', 'ecid')

),

crm_people as (

    select distinct
        unique_id_observations.identity_value as crm_id
    from unique_id_observations
    where unique_id_observations.namespace = 'crm_id'

),

loyalty_members as (

    select
        unique_id_observations.identity_value as loyalty_id,
        max(unique_id_observations.observed_at) as last_observed_at
    from unique_id_observations
    where unique_id_observations.namespace = 'loyalty_id'
    group by unique_id_observations.identity_value

),

-- A loyalty record naming its own customer_id; the latest such record wins.
loyalty_customer_claims as (

    select distinct on (loyalty.identity_value)
        loyalty.identity_value as loyalty_id,
        customer.identity_value as crm_id,
        1 as claim_rank
    from unique_id_observations as loyalty
    inner join unique_id_observations as customer
        on customer.source_record_id = loyalty.source_record_id
        and customer.namespace = 'crm_id'
    where loyalty.namespace = 'loyalty_id'
        and loyalty.is_record_key
    order by
        loyalty.identity_value,
        loyalty.observed_at desc,
        loyalty._batch_id desc,
        loyalty._line_number desc

),

crm_contact_owners as (

    select distinct
        contact_observations.namespace,
        contact_observations.identity_value,
        customer.identity_value as crm_id
    from contact_observations
    inner join unique_id_observations as customer
        on customer.source_record_id = contact_observations.source_record_id
        and customer.namespace = 'crm_id'

),

sole_crm_contact_owners as (

    select
        crm_contact_owners.namespace,
        crm_contact_owners.identity_value,
        min(crm_contact_owners.crm_id) as crm_id
    from crm_contact_owners
    group by
        crm_contact_owners.namespace,
        crm_contact_owners.identity_value
    having count(distinct crm_contact_owners.crm_id) = 1

),

-- Without its own customer_id, a member joins the one crm person that solely
-- owns the emails and phones it carries, if they all point at the same one.
loyalty_contact_claims as (

    select
        loyalty.identity_value as loyalty_id,
        min(sole_crm_contact_owners.crm_id) as crm_id,
        2 as claim_rank
    from unique_id_observations as loyalty
    inner join contact_observations
        on contact_observations.source_record_id = loyalty.source_record_id
    inner join sole_crm_contact_owners
        on sole_crm_contact_owners.namespace = contact_observations.namespace
        and sole_crm_contact_owners.identity_value
            = contact_observations.identity_value
    where loyalty.namespace = 'loyalty_id'
        and loyalty.identity_value not in (
            select loyalty_customer_claims.loyalty_id
            from loyalty_customer_claims
        )
    group by loyalty.identity_value
    having count(distinct sole_crm_contact_owners.crm_id) = 1

),

loyalty_claims as (

    select * from loyalty_customer_claims
    union all
    select * from loyalty_contact_claims

),

-- A person holds at most one loyalty id: a customer_id claim beats a contact
-- claim, then the most recently seen member wins.
ranked_loyalty_claims as (

    select
        loyalty_claims.loyalty_id,
        loyalty_claims.crm_id,
        loyalty_claims.claim_rank,
        row_number() over (
            partition by loyalty_claims.crm_id
            order by
                loyalty_claims.claim_rank,
                loyalty_members.last_observed_at desc,
                loyalty_claims.loyalty_id
        ) as claim_order
    from loyalty_claims
    inner join loyalty_members
        on loyalty_members.loyalty_id = loyalty_claims.loyalty_id

),

unique_id_people as (

    select
        'crm_id' as namespace,
        crm_people.crm_id as identity_value,
        'crm_id' as anchor_namespace,
        crm_people.crm_id as anchor_value,
        'crm_id_anchor' as link_rule
    from crm_people

    union all

    select
        'loyalty_id' as namespace,
        loyalty_members.loyalty_id as identity_value,
        case when won.crm_id is null then 'loyalty_id' else 'crm_id' end
            as anchor_namespace,
        coalesce(won.crm_id, loyalty_members.loyalty_id) as anchor_value,
        case
            when won.claim_rank = 1 then 'loyalty_by_customer_id'
            when won.claim_rank = 2 then 'loyalty_by_unique_contact'
            when lost.loyalty_id is not null then 'loyalty_person_taken'
            else 'loyalty_id_anchor'
        end as link_rule
    from loyalty_members
    left join ranked_loyalty_claims as won
        on won.loyalty_id = loyalty_members.loyalty_id
        and won.claim_order = 1
    left join ranked_loyalty_claims as lost
        on lost.loyalty_id = loyalty_members.loyalty_id
        and lost.claim_order > 1

),

contact_people as (

    select
        contact_observations.namespace,
        contact_observations.identity_value,
        count(distinct
            unique_id_people.anchor_namespace
            || ':' || unique_id_people.anchor_value
        ) as person_count,
        min(unique_id_people.anchor_namespace) as anchor_namespace,
        min(unique_id_people.anchor_value) as anchor_value
    from contact_observations
    inner join unique_id_observations
        on unique_id_observations.source_record_id
            = contact_observations.source_record_id
    inner join unique_id_people
        on unique_id_people.namespace = unique_id_observations.namespace
        and unique_id_people.identity_value
            = unique_id_observations.identity_value
    group by
        contact_observations.namespace,
        contact_observations.identity_value

),

contact_points as (

    select distinct
        contact_observations.namespace,
        contact_observations.identity_value
    from contact_observations

),

-- A contact point joins its one owner; shared by several people (a household)
-- or by none, it anchors a profile of its own and merges nobody.
contact_links as (

    select
        contact_points.namespace,
        contact_points.identity_value,
        case
            when contact_people.person_count = 1
                then contact_people.anchor_namespace
            else contact_points.namespace
        end as anchor_namespace,
        case
            when contact_people.person_count = 1
                then contact_people.anchor_value
            else contact_points.identity_value
        end as anchor_value,
        case
            when contact_people.person_count = 1 then 'owned_by_one_person'
            when contact_people.person_count > 1 then 'contested_own_anchor'
            else 'unowned_own_anchor'
        end as link_rule
    from contact_points
    left join contact_people
        on contact_people.namespace = contact_points.namespace
        and contact_people.identity_value = contact_points.identity_value

),

linked as (

    select * from unique_id_people
    union all
    select * from contact_links

),

final as (

    select
        linked.namespace,
        linked.identity_value,
        {{ profile_id_from_anchor(
            'linked.anchor_namespace', 'linked.anchor_value'
        ) }} as profile_id,
        linked.anchor_namespace,
        linked.anchor_value,
        linked.link_rule
    from linked

)

select * from final
