{#- Splits components that hold two or more values of a unique namespace (two
    crm ids joined by a family email, two loyalty cards on one person), and
    only those: every other component is one profile as it stands.

    Each value of the component's highest-priority unique namespace anchors a
    profile. A value of a lower unique namespace joins the anchor it is
    closest to (fewest links; ties by the namespace priority of the identity
    it is reached through); a profile keeps one value per unique namespace,
    the closest and then the most recently seen. Every other identity follows
    the unique value it is closest to, with the same tie-break. An identity
    whose best candidates lead to different profiles is contested and anchors
    a profile of its own. -#}
with

conflict_nodes as (

    select * from {{ ref('int_identity_conflict_nodes') }}

),

conflict_steps as (

    select * from {{ ref('int_identity_conflict_steps') }}

),

-- Breadth-first reach from every unique value. A walk stops at another
-- unique value (it belongs to that person) and never runs longer than the
-- component has nodes, so it ends; UNION keeps each (source, node, length)
-- once.
reach as (

    {#- dbt wraps CTEs itself, so the recursion is declared here. -#}
    select * from (
        with recursive walks (
            source_node_id, node_id, distance, via_priority
        ) as (

            select
                conflict_nodes.node_id,
                conflict_nodes.node_id,
                0,
                0
            from conflict_nodes
            where conflict_nodes.is_unique

            union

            select
                walks.source_node_id,
                conflict_steps.to_node_id,
                walks.distance + 1,
                conflict_steps.from_priority
            from walks
            inner join conflict_steps
                on conflict_steps.from_node_id = walks.node_id
            where walks.distance < conflict_steps.component_node_count
                and (walks.distance = 0 or not conflict_steps.from_is_unique)

        )

        select * from walks
    ) as walks

),

closest_reach as (

    select distinct on (reach.source_node_id, reach.node_id)
        reach.source_node_id,
        reach.node_id,
        reach.distance,
        reach.via_priority
    from reach
    order by
        reach.source_node_id,
        reach.node_id,
        reach.distance,
        reach.via_priority

),

top_priorities as (

    select
        conflict_nodes.component_id,
        min(conflict_nodes.priority) as priority
    from conflict_nodes
    where conflict_nodes.is_unique
    group by conflict_nodes.component_id

),

anchors as (

    select conflict_nodes.*
    from conflict_nodes
    inner join top_priorities
        on top_priorities.component_id = conflict_nodes.component_id
        and top_priorities.priority = conflict_nodes.priority
    where conflict_nodes.is_unique

),

-- Lower unique values and the anchors they reach, best first.
unique_claims as (

    select
        claimant.node_id,
        claimant.namespace,
        claimant.last_seen_at,
        anchors.node_id as anchor_node_id,
        closest_reach.distance,
        closest_reach.via_priority,
        dense_rank() over (
            partition by claimant.node_id
            order by closest_reach.distance, closest_reach.via_priority
        ) as claim_rank
    from conflict_nodes as claimant
    inner join closest_reach
        on closest_reach.node_id = claimant.node_id
    inner join anchors
        on anchors.node_id = closest_reach.source_node_id
    where claimant.is_unique
        and claimant.node_id not in (select anchors.node_id from anchors)

),

best_unique_claims as (

    select
        unique_claims.node_id,
        min(unique_claims.namespace) as namespace,
        min(unique_claims.last_seen_at) as last_seen_at,
        min(unique_claims.distance) as distance,
        min(unique_claims.via_priority) as via_priority,
        min(unique_claims.anchor_node_id) as anchor_node_id,
        count(*) as anchor_count,
        array_agg(unique_claims.anchor_node_id) as candidate_anchor_ids
    from unique_claims
    where unique_claims.claim_rank = 1
    group by unique_claims.node_id

),

-- One value per unique namespace per profile: the closest, then the most
-- recently seen, stays.
unique_slots as (

    select
        best_unique_claims.*,
        row_number() over (
            partition by
                best_unique_claims.anchor_node_id,
                best_unique_claims.namespace
            order by
                best_unique_claims.distance,
                best_unique_claims.via_priority,
                best_unique_claims.last_seen_at desc,
                best_unique_claims.node_id
        ) as slot_rank
    from best_unique_claims
    where best_unique_claims.anchor_count = 1

),

unique_assignments as (

    select
        anchors.node_id,
        anchors.node_id as anchor_node_id,
        'unique_anchor' as link_rule,
        cast(null as bigint[]) as candidate_anchor_ids,
        cast(null as text) as evidence
    from anchors

    union all

    select
        unique_slots.node_id,
        case
            when unique_slots.slot_rank = 1 then unique_slots.anchor_node_id
            else unique_slots.node_id
        end,
        case
            when unique_slots.slot_rank = 1 then 'closest_anchor'
            else 'unique_namespace_taken'
        end,
        case
            when unique_slots.slot_rank > 1
                then array[unique_slots.anchor_node_id]
        end,
        unique_slots.distance || ' links via priority '
            || unique_slots.via_priority
    from unique_slots

    union all

    select
        best_unique_claims.node_id,
        best_unique_claims.node_id,
        'contested_own_anchor',
        best_unique_claims.candidate_anchor_ids,
        best_unique_claims.distance || ' links via priority '
            || best_unique_claims.via_priority
    from best_unique_claims
    where best_unique_claims.anchor_count > 1

    union all

    -- Reached by no anchor except through another person's unique value.
    select
        conflict_nodes.node_id,
        conflict_nodes.node_id,
        'unique_anchor',
        cast(null as bigint[]),
        cast(null as text)
    from conflict_nodes
    where conflict_nodes.is_unique
        and conflict_nodes.node_id not in (select anchors.node_id from anchors)
        and conflict_nodes.node_id not in (
            select best_unique_claims.node_id from best_unique_claims
        )

),

-- Every other identity follows the unique value it is closest to.
other_claims as (

    select
        claimant.node_id,
        unique_assignments.anchor_node_id,
        closest_reach.distance,
        closest_reach.via_priority,
        dense_rank() over (
            partition by claimant.node_id
            order by closest_reach.distance, closest_reach.via_priority
        ) as claim_rank
    from conflict_nodes as claimant
    inner join closest_reach
        on closest_reach.node_id = claimant.node_id
    inner join unique_assignments
        on unique_assignments.node_id = closest_reach.source_node_id
    where not claimant.is_unique

),

best_other_claims as (

    select
        other_claims.node_id,
        min(other_claims.anchor_node_id) as anchor_node_id,
        count(distinct other_claims.anchor_node_id) as anchor_count,
        array_agg(distinct other_claims.anchor_node_id)
            as candidate_anchor_ids,
        min(other_claims.distance) as distance,
        min(other_claims.via_priority) as via_priority
    from other_claims
    where other_claims.claim_rank = 1
    group by other_claims.node_id

),

other_assignments as (

    select
        best_other_claims.node_id,
        case
            when best_other_claims.anchor_count = 1
                then best_other_claims.anchor_node_id
            else best_other_claims.node_id
        end as anchor_node_id,
        case
            when best_other_claims.anchor_count = 1 then 'closest_anchor'
            else 'contested_own_anchor'
        end as link_rule,
        case
            when best_other_claims.anchor_count > 1
                then best_other_claims.candidate_anchor_ids
        end as candidate_anchor_ids,
        best_other_claims.distance || ' links via priority '
            || best_other_claims.via_priority as evidence
    from best_other_claims

),

final as (

    select
        conflict_nodes.component_id,
        assignments.node_id,
        assignments.anchor_node_id,
        assignments.link_rule,
        assignments.candidate_anchor_ids,
        assignments.evidence
    from (
        select * from unique_assignments
        union all
        select * from other_assignments
    ) as assignments
    inner join conflict_nodes
        on conflict_nodes.node_id = assignments.node_id

)

select * from final
