with

source as (

    select * from {{ source('orders', 'offline_orders') }}

),

offline_orders as (

    select
        nullif(btrim(source.order_id), '') as order_id,
        nullif(btrim(source.loyalty_id), '') as loyalty_id,
        nullif(btrim(source.customer_id), '') as customer_id,
        source.email,
        {{ normalize_email('source.email') }} as email_normalized,
        nullif(btrim(source.store_id), '') as store_id,
        source.channel,
        source.ordered_at,
        source.order_total,
        upper(btrim(source.currency)) as currency,
        source._batch_id,
        source._file_name,
        source._line_number,
        source._promoted_at

    from source

)

select * from offline_orders
