-- Each profile is anchored by exactly one of its identities, which its id is
-- derived from.
select
    profile_identities.profile_id,
    count(*) filter (where profile_identities.is_anchor) as anchor_count,
    bool_or(
        profile_identities.is_anchor
        and md5(profile_identities.namespace || ':'
            || profile_identities.identity_value)
            <> profile_identities.profile_id
    ) as has_unstable_id
from {{ ref('bdg_profile_identities') }} as profile_identities
group by profile_identities.profile_id
having count(*) filter (where profile_identities.is_anchor) <> 1
    or bool_or(
        profile_identities.is_anchor
        and md5(profile_identities.namespace || ':'
            || profile_identities.identity_value)
            <> profile_identities.profile_id
    )
