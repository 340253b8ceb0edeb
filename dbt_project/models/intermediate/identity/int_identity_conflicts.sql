{#- Identities the rules refused to link, with every person that claimed them,
    so a household or a disputed loyalty card can be explained and reviewed. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

identities_linked as (

    select * from {{ ref('int_identities_linked') }}

),

refused as (

    select * from identities_linked
    where identities_linked.link_rule in (
        'contested_own_anchor', 'loyalty_person_taken'
    )

),

-- The people a refused identity was seen with, through the unique ids on the
-- same records (for a loyalty id: the person it lost to).
claims as (

    select distinct
        refused.namespace,
        refused.identity_value,
        refused.link_rule,
        claimant.profile_id as claimed_by_profile_id
    from refused
    inner join observations as refused_observations
        on refused_observations.namespace = refused.namespace
        and refused_observations.identity_value = refused.identity_value
    inner join observations as unique_id_observations
        on unique_id_observations.source_record_id
            = refused_observations.source_record_id
        and unique_id_observations.namespace in ('crm_id', 'loyalty_id')
    inner join identities_linked as claimant
        on claimant.namespace = unique_id_observations.namespace
        and claimant.identity_value = unique_id_observations.identity_value
    where claimant.profile_id <> refused.profile_id

),

final as (

    select
        claims.namespace,
        claims.identity_value,
        claims.claimed_by_profile_id,
        case claims.link_rule
            when 'contested_own_anchor' then 'shared_by_several_people'
            when 'loyalty_person_taken' then 'person_already_has_loyalty_id'
        end as conflict_reason,
        refused.profile_id as assigned_profile_id
    from claims
    inner join refused
        on refused.namespace = claims.namespace
        and refused.identity_value = claims.identity_value

)

select * from final
