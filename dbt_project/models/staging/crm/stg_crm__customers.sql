with

source as (

    select * from {{ source('crm', 'crm_customers') }}

),

customers as (

    select
        nullif(btrim(source.customer_id), '') as customer_id,
        source.email,
        {{ normalize_email('source.email') }} as email_normalized,
        source.phone,
        {{ normalize_phone('source.phone') }} as phone_e164,
        source.first_name,
        source.last_name,
        source.postal_code,
        source.country,
        source.birth_date,
        source.email_opt_in,
        source.sms_opt_in,
        source.ads_opt_in,
        source.updated_at,
        source._batch_id,
        source._file_name,
        source._line_number,
        source._promoted_at

    from source

)

select * from customers
