-- A profile holds at most one loyalty id.
select
    profile_identities.profile_id,
    count(*) as loyalty_id_count
from {{ ref('bdg_profile_identities') }} as profile_identities
where profile_identities.namespace = 'loyalty_id'
group by profile_identities.profile_id
having count(*) > 1
