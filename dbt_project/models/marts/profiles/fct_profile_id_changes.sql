{#- Profile id changes downstream tools must follow: an identity that moved
    from one profile to another, or left every profile. -#}
with

profile_id_changes as (

    select * from {{ ref('int_profile_id_changes') }}

),

final as (

    select
        profile_id_changes.namespace,
        profile_id_changes.identity_value,
        profile_id_changes.previous_profile_id,
        profile_id_changes.profile_id,
        profile_id_changes.changed_at
    from profile_id_changes
    where profile_id_changes.previous_profile_id is not null

)

select * from final
