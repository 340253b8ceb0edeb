-- A profile holds at most one crm id: two CRM customers are never merged.
select
    profile_identities.profile_id,
    count(*) as crm_id_count
from {{ ref('bdg_profile_identities') }} as profile_identities
where profile_identities.namespace = 'crm_id'
group by profile_identities.profile_id
having count(*) > 1
