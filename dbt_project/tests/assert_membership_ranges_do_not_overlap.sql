-- For any instant a profile is in an audience at most once: at most one open
-- range per pair, and closed ranges never end before they start.
select
    history.audience_id,
    history.profile_id
from {{ ref('fct_audience_membership_history') }} as history
group by history.audience_id, history.profile_id
having count(*) filter (where history.valid_to is null) > 1
    or bool_or(history.valid_to < history.valid_from)
