with

audience_membership as (

    select * from {{ ref('fct_audience_membership') }}

),

audiences as (

    select * from {{ ref('dim_audiences') }}

),

profiles as (

    select * from {{ ref('dim_profiles') }}

),

final as (

    select
        audience_membership.audience_id,
        audiences.audience_name,
        audience_membership.profile_id,
        profiles.customer_id,
        profiles.loyalty_id,
        profiles.email,
        profiles.email_sha256,
        profiles.phone_e164,
        coalesce(profiles.email_opt_in, false) as has_email_consent,
        coalesce(profiles.sms_opt_in, false) as has_sms_consent,
        coalesce(profiles.ads_opt_in, false) as has_ads_consent,
        audience_membership.qualified_at
    from audience_membership
    inner join audiences
        on audiences.audience_id = audience_membership.audience_id
    inner join profiles
        on profiles.profile_id = audience_membership.profile_id
    where audience_membership.status = 'realised'

)

select * from final
