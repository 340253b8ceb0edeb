with

membership_history as (

    select * from {{ ref('fct_audience_membership_history') }}

),

-- The latest range says where a pair stands now.
latest_ranges as (

    select distinct on (
        membership_history.audience_id,
        membership_history.profile_id
    )
        membership_history.audience_id,
        membership_history.profile_id,
        membership_history.valid_from,
        membership_history.valid_to
    from membership_history
    order by
        membership_history.audience_id,
        membership_history.profile_id,
        membership_history.valid_from desc

),

first_qualifications as (

    select
        membership_history.audience_id,
        membership_history.profile_id,
        min(membership_history.valid_from) as first_qualified_at,
        count(*) as range_count
    from membership_history
    group by
        membership_history.audience_id,
        membership_history.profile_id

),

final as (

    select
        latest_ranges.audience_id,
        latest_ranges.profile_id,
        case
            when latest_ranges.valid_to is null then 'realised'
            else 'exited'
        end as status,
        latest_ranges.valid_from as qualified_at,
        latest_ranges.valid_to as exited_at,
        first_qualifications.first_qualified_at,
        first_qualifications.range_count
    from latest_ranges
    inner join first_qualifications
        on first_qualifications.audience_id = latest_ranges.audience_id
        and first_qualifications.profile_id = latest_ranges.profile_id

)

select * from final
