with

source as (

    select * from {{ source('web', 'web_events') }}

),

web_events as (

    select
        nullif(btrim(source.event_id), '') as event_id,
        nullif(btrim(source.ecid), '') as ecid,
        source.event_type,
        source.occurred_at,
        nullif(btrim(source.customer_id), '') as customer_id,
        source.email,
        {{ normalize_email('source.email') }} as email_normalized,
        source.page_url,
        source.product_sku,
        source.revenue,
        upper(btrim(source.currency)) as currency,
        source._batch_id,
        source._file_name,
        source._line_number,
        source._promoted_at

    from source

)

select * from web_events
