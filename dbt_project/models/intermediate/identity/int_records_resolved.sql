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
    where not is_cut_by_cap

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
        observations.priority,
        observations.namespace,
        identities_resolved.profile_id,
        identities_resolved.link_rule
    from observations
    inner join identities_resolved
        on identities_resolved.node_id = observations.node_id
    where observations.kind <> 'device'

),

device_observations as (

    select
        observations.source_record_id,
        observations.node_id,
        observations.namespace,
        observations.priority,
        observations.observed_at,
        observations._batch_id,
        observations._line_number,
        identities_resolved.profile_id as device_profile_id,
        identities_resolved.link_rule as device_link_rule
    from observations
    inner join identities_resolved
        on identities_resolved.node_id = observations.node_id
    where observations.kind = 'device'

),

-- Each device's events and logins on one timeline; at one instant a login
-- comes first, so an event at the moment of a login follows it.
timeline as (

    select
        device_authentications.node_id,
        device_authentications.authenticated_at as happened_at,
        0 as login_first,
        device_authentications._batch_id,
        device_authentications._line_number,
        device_authentications.profile_id as login_profile_id,
        cast(null as text) as source_record_id,
        cast(null as text) as namespace,
        cast(null as integer) as priority,
        cast(null as text) as device_profile_id,
        cast(null as text) as device_link_rule
    from device_authentications

    union all

    select
        device_observations.node_id,
        device_observations.observed_at,
        1,
        device_observations._batch_id,
        device_observations._line_number,
        cast(null as text),
        device_observations.source_record_id,
        device_observations.namespace,
        device_observations.priority,
        device_observations.device_profile_id,
        device_observations.device_link_rule
    from device_observations

),

-- Rows since (and including) the latest login share a login_group.
timeline_grouped as (

    select
        timeline.*,
        count(timeline.login_profile_id) over (
            partition by timeline.node_id
            order by
                timeline.happened_at,
                timeline.login_first,
                timeline._batch_id,
                timeline._line_number
            rows unbounded preceding
        ) as login_group
    from timeline

),

logins_before as (

    select
        timeline_grouped.*,
        max(timeline_grouped.login_profile_id) over (
            partition by timeline_grouped.node_id, timeline_grouped.login_group
        ) as login_before_profile_id
    from timeline_grouped

),

first_logins as (

    select
        device_authentications.node_id,
        (array_agg(device_authentications.profile_id
            order by
                device_authentications.authenticated_at,
                device_authentications._batch_id,
                device_authentications._line_number))[1] as profile_id
    from device_authentications
    group by device_authentications.node_id

),

device_candidates as (

    select
        logins_before.source_record_id,
        logins_before.priority,
        logins_before.namespace,
        coalesce(
            case
                when logins_before.login_group > 0
                    then logins_before.login_before_profile_id
            end,
            first_logins.profile_id,
            logins_before.device_profile_id
        ) as profile_id,
        case
            when logins_before.login_group > 0
                then 'device_authenticated_before'
            when first_logins.profile_id is not null
                then 'device_first_authenticated'
            else logins_before.device_link_rule
        end as link_rule
    from logins_before
    left join first_logins
        on first_logins.node_id = logins_before.node_id
    where logins_before.source_record_id is not null

),

candidates as (

    select * from identity_candidates
    union all
    select * from device_candidates

),

ranked_candidates as (

    select distinct on (candidates.source_record_id)
        candidates.source_record_id,
        candidates.namespace,
        candidates.profile_id,
        candidates.link_rule
    from candidates
    order by
        candidates.source_record_id,
        candidates.priority,
        candidates.profile_id

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

)

select * from final
