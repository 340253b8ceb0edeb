with

source as (

    select * from {{ source('loyalty', 'loyalty_members') }}

),

members as (

    select
        nullif(btrim(source.loyalty_id), '') as loyalty_id,
        nullif(btrim(source.customer_id), '') as customer_id,
        source.email,
        {{ normalize_email('source.email') }} as email_normalized,
        source.phone,
        {{ normalize_phone('source.phone') }} as phone_e164,
        lower(btrim(source.tier)) as tier,
        source.points_balance,
        source.enrolled_at,
        source.updated_at,
        source._batch_id,
        source._file_name,
        source._line_number,
        source._promoted_at

    from source

)

select * from members
