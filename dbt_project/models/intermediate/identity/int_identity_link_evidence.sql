{#- Every piece of evidence that two identities belong together: two linkable
    identities on one source record (`same_record`), or an email whose SHA-256
    is a hashed email some dataset carries (`email_hash_match`). Node a is the
    smaller node id, so a pair reads the same from both sides. -#}
with

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

same_record as (

    select
        'same_record' as link_rule,
        left_side.node_id as node_a,
        left_side.namespace as namespace_a,
        left_side.identity_value as identity_value_a,
        left_side.kind as kind_a,
        right_side.node_id as node_b,
        right_side.namespace as namespace_b,
        right_side.identity_value as identity_value_b,
        right_side.kind as kind_b,
        left_side.dataset,
        left_side.source_record_id,
        left_side.record_key,
        left_side._file_name,
        left_side._line_number,
        left_side.observed_at
    from observations as left_side
    inner join observations as right_side
        on right_side.source_record_id = left_side.source_record_id
        and right_side.node_id > left_side.node_id
    -- A record naming two devices says nothing about a person.
    where not (left_side.kind = 'device' and right_side.kind = 'device')

),

hashed_emails as (

    select * from observations
    where observations.namespace = 'email_sha256'

),

emails as (

    select distinct
        observations.node_id,
        observations.identity_value,
        observations.kind
    from observations
    where observations.namespace = 'email'
        -- Hash every email only when some dataset carries hashes at all.
        and exists (select 1 from hashed_emails)

),

hash_matches as (

    select
        'email_hash_match' as link_rule,
        least(emails.node_id, hashed_emails.node_id) as node_a,
        case when emails.node_id < hashed_emails.node_id
            then 'email' else 'email_sha256' end as namespace_a,
        case when emails.node_id < hashed_emails.node_id
            then emails.identity_value else hashed_emails.identity_value
        end as identity_value_a,
        case when emails.node_id < hashed_emails.node_id
            then emails.kind else hashed_emails.kind end as kind_a,
        greatest(emails.node_id, hashed_emails.node_id) as node_b,
        case when emails.node_id < hashed_emails.node_id
            then 'email_sha256' else 'email' end as namespace_b,
        case when emails.node_id < hashed_emails.node_id
            then hashed_emails.identity_value else emails.identity_value
        end as identity_value_b,
        case when emails.node_id < hashed_emails.node_id
            then hashed_emails.kind else emails.kind end as kind_b,
        hashed_emails.dataset,
        hashed_emails.source_record_id,
        hashed_emails.record_key,
        hashed_emails._file_name,
        hashed_emails._line_number,
        hashed_emails.observed_at
    from hashed_emails
    inner join emails
        on {{ email_sha256('emails.identity_value') }}
            = hashed_emails.identity_value

),

final as (

    select * from same_record
    union all
    select * from hash_matches

)

select * from final
