{#- Every time an identity's profile id changes across builds (first seen,
    moved to another profile, or left every profile), so downstream tools
    holding an old id can follow it. Appends one row per change per build. -#}
{{ config(materialized='incremental', on_schema_change='fail') }}

with

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}
    where not is_cut_by_cap

),

recorded as (

{% if is_incremental() %}
    select distinct on (recorded.namespace, recorded.identity_value)
        recorded.namespace,
        recorded.identity_value,
        recorded.profile_id
    from {{ this }} as recorded
    order by
        recorded.namespace,
        recorded.identity_value,
        recorded.changed_at desc
{% else %}
    select
        cast(null as text) as namespace,
        cast(null as text) as identity_value,
        cast(null as text) as profile_id
    where false
{% endif %}

),

changes as (

    select
        coalesce(identities_resolved.namespace, recorded.namespace)
            as namespace,
        coalesce(identities_resolved.identity_value, recorded.identity_value)
            as identity_value,
        recorded.profile_id as previous_profile_id,
        identities_resolved.profile_id,
        cast('{{ run_started_at }}' as timestamptz) as changed_at
    from identities_resolved
    full outer join recorded
        on recorded.namespace = identities_resolved.namespace
        and recorded.identity_value = identities_resolved.identity_value
    where identities_resolved.profile_id is distinct from recorded.profile_id

)

select * from changes
