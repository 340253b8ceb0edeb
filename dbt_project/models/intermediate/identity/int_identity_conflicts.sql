{#- Everything the rules kept apart or cut, with the profiles involved and the
    evidence, so a household, a disputed loyalty card or a junk hub can be
    explained and reviewed: split conflicts, quarantined identities,
    never-link pairs and identities cut by the profile cap. -#}
with

splits as (

    select * from {{ ref('int_identity_component_splits') }}
    where link_rule in ('contested_own_anchor', 'unique_namespace_taken')

),

quarantine as (

    select * from {{ ref('int_identity_quarantine') }}

),

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

pairs as (

    select * from {{ ref('int_identity_pairs') }}

),

never_link as (

    select * from {{ ref('identity_never_link') }}

),

-- The candidates' profile ids by a join, not a lookup per row: nodes has no
-- index, and a correlated scan per contested identity grows with the square.
split_candidates as (

    select
        splits.node_id,
        {{ profile_id_from_anchor(
            'candidate.namespace', 'candidate.identity_value'
        ) }} as candidate_profile_id
    from splits
    cross join lateral unnest(splits.candidate_anchor_ids) as anchor (node_id)
    inner join nodes as candidate
        on candidate.node_id = anchor.node_id

),

split_conflicts as (

    select
        splits.node_id,
        case splits.link_rule
            when 'contested_own_anchor' then 'contested_between_profiles'
            else 'unique_namespace_taken'
        end as conflict_reason,
        coalesce(
            array_agg(
                distinct split_candidates.candidate_profile_id
                order by split_candidates.candidate_profile_id
            ) filter (where split_candidates.candidate_profile_id is not null),
            array[]::text[]
        ) as involved_profile_ids,
        splits.evidence
    from splits
    left join split_candidates
        on split_candidates.node_id = splits.node_id
    group by
        splits.node_id,
        splits.link_rule,
        splits.evidence

),

quarantine_neighbours as (

    select pairs.node_a as node_id, pairs.node_b as neighbour_id
    from pairs
    where pairs.node_a in (select quarantine.node_id from quarantine)

    union all

    select pairs.node_b as node_id, pairs.node_a as neighbour_id
    from pairs
    where pairs.node_b in (select quarantine.node_id from quarantine)

),

-- The profiles a quarantined identity would have joined.
quarantined as (

    select
        quarantine.node_id,
        quarantine.quarantine_reason as conflict_reason,
        array_agg(distinct neighbour.profile_id) filter (
            where neighbour.profile_id is not null
        ) as involved_profile_ids,
        quarantine.evidence
    from quarantine
    left join quarantine_neighbours
        on quarantine_neighbours.node_id = quarantine.node_id
    left join identities_resolved as neighbour
        on neighbour.node_id = quarantine_neighbours.neighbour_id
    group by
        quarantine.node_id,
        quarantine.quarantine_reason,
        quarantine.evidence

),

refused_pairs as (

    select
        side.node_id,
        'never_link_pair' as conflict_reason,
        array[
            least(left_side.profile_id, right_side.profile_id),
            greatest(left_side.profile_id, right_side.profile_id)
        ] as involved_profile_ids,
        'identity_never_link with ' || side.other_namespace || ': '
            || coalesce(never_link.reason, '') as evidence
    from never_link
    inner join identities_resolved as left_side
        on left_side.node_id = {{ identity_node_id(
            'never_link.namespace_a', 'never_link.value_a'
        ) }}
    inner join identities_resolved as right_side
        on right_side.node_id = {{ identity_node_id(
            'never_link.namespace_b', 'never_link.value_b'
        ) }}
    cross join lateral (
        values
            (left_side.node_id, never_link.namespace_b),
            (right_side.node_id, never_link.namespace_a)
    ) as side (node_id, other_namespace)
    where never_link.namespace_b is not null

),

cut_by_cap as (

    select
        identities_resolved.node_id,
        'cut_by_profile_cap' as conflict_reason,
        array[identities_resolved.profile_id] as involved_profile_ids,
        'rank ' || identities_resolved.profile_rank || ' of the profile; cap '
            || {{ var('max_identities_per_profile', 50) }} as evidence
    from identities_resolved
    where identities_resolved.is_cut_by_cap

),

conflicts as (

    select * from split_conflicts
    union all
    select * from quarantined
    union all
    select * from refused_pairs
    union all
    select * from cut_by_cap

),

final as (

    select
        conflicts.node_id,
        nodes.namespace,
        nodes.identity_value,
        conflicts.conflict_reason,
        case
            when not coalesce(resolved.is_cut_by_cap, true)
                then resolved.profile_id
        end as profile_id,
        conflicts.involved_profile_ids,
        conflicts.evidence
    from conflicts
    inner join nodes
        on nodes.node_id = conflicts.node_id
    left join identities_resolved as resolved
        on resolved.node_id = conflicts.node_id

)

select * from final
