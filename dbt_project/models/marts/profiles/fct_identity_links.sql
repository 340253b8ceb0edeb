{#- "Why are these two records one profile?" as a query: every piece of
    evidence linking two identities, with the record it came from, the rule
    that read it, whether the graph kept the link, and both identities'
    profiles today. -#}
with

link_evidence as (

    select * from {{ ref('int_identity_link_evidence') }}

),

edges as (

    select * from {{ ref('int_identity_edges') }}
    where node_a <> node_b

),

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}
    where not is_cut_by_cap

),

final as (

    select
        link_evidence.namespace_a,
        link_evidence.identity_value_a,
        profile_a.profile_id as profile_id_a,
        link_evidence.namespace_b,
        link_evidence.identity_value_b,
        profile_b.profile_id as profile_id_b,
        case
            when 'device' in (link_evidence.kind_a, link_evidence.kind_b)
                then 'device_authentication'
            else link_evidence.link_rule
        end as link_rule,
        edges.node_a is not null as is_link_kept,
        profile_a.profile_id = profile_b.profile_id as is_same_profile,
        link_evidence.dataset,
        link_evidence.record_key,
        link_evidence.source_record_id,
        link_evidence._file_name as file_name,
        link_evidence._line_number as line_number,
        link_evidence.observed_at
    from link_evidence
    left join edges
        on edges.node_a = link_evidence.node_a
        and edges.node_b = link_evidence.node_b
    left join identities_resolved as profile_a
        on profile_a.node_id = link_evidence.node_a
    left join identities_resolved as profile_b
        on profile_b.node_id = link_evidence.node_b

)

select * from final
