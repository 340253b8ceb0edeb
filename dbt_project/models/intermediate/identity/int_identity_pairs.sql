{#- One row per pair of identities seen together, however many records say
    so: the candidate links before the graph rules decide which to keep. -#}
with

link_evidence as (

    select * from {{ ref('int_identity_link_evidence') }}

),

pairs as (

    select
        link_evidence.node_a,
        link_evidence.node_b,
        min(link_evidence.kind_a) as kind_a,
        min(link_evidence.kind_b) as kind_b,
        min(link_evidence.link_rule) as link_rule,
        count(*) as evidence_count,
        min(link_evidence.observed_at) as first_seen_at,
        max(link_evidence.observed_at) as last_seen_at
    from link_evidence
    group by
        link_evidence.node_a,
        link_evidence.node_b

)

select * from pairs
