"""Synthetic validated.<dataset> tables with the skew of real customer data.

Per N source records: about 20% CRM customers, 10% loyalty members and 70% web
events. Households share an email, some devices are shared by two people, some
values are junk placeholders, and a few people form long chains of devices handed
from one to the next. All of it is generated inside Postgres by set-based SQL.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# A record is known by its batch and line, so every generated row needs its own line
# number: rows sharing one would all read as a single record naming every identity.
AUDIT_COLUMNS = """
    0::bigint as _batch_id,
    'bench.csv' as _file_name,
    {line}::integer as _line_number,
    now() as _promoted_at
"""

# {customers}, {members} and {events} are row counts; persons are the CRM customers.
TABLES = {
    "crm_customers": """
        create table validated.crm_customers as
        select
            'C' || person_id as customer_id,
            case
                when person_id % 97 = 0 then 'test@test.com'
                when person_id % 10 < 2 then 'household' || person_id / 3 || '@example.com'
                else 'person' || person_id || '@example.com'
            end as email,
            case
                when person_id % 89 = 0 then '0000000000'
                else '+1555' || lpad((person_id % 10000000)::text, 7, '0')
            end as phone,
            'First' as first_name, 'Last' as last_name, '10001' as postal_code,
            'US' as country, date '1980-01-01' as birth_date,
            true as email_opt_in, false as sms_opt_in, true as ads_opt_in,
            timestamptz '2024-01-01' + person_id * interval '1 second' as updated_at,
            {audit_person}
        from generate_series(1, {customers}) as person_id
    """,
    "loyalty_members": """
        create table validated.loyalty_members as
        select
            'L' || member_id as loyalty_id,
            case when member_id % 5 <> 0 then 'C' || member_id end as customer_id,
            'person' || member_id || '@example.com' as email,
            null::text as phone, 'silver' as tier, 100 as points_balance,
            timestamptz '2023-01-01' as enrolled_at,
            timestamptz '2024-02-01' + member_id * interval '1 second' as updated_at,
            {audit_member}
        from generate_series(1, {members}) as member_id
    """,
    "offline_orders": """
        create table validated.offline_orders (
            order_id text, loyalty_id text, customer_id text, email text, store_id text,
            channel text, ordered_at timestamptz, order_total numeric, currency text,
            _batch_id bigint, _file_name text, _line_number integer, _promoted_at timestamptz
        )
    """,
    # Five events per device; one device in fifty is shared by two people; one in
    # a thousand is a store kiosk every fiftieth person signs in on; devices of
    # the chain people pass each one to the next.
    "web_events": """
        create table validated.web_events as
        with events as (
            select
                event_number,
                event_number / 5 as device_number,
                (event_number / 5) % {customers} + 1 as owner_id
            from generate_series(1, {events}) as event_number
        )
        select
            'E' || events.event_number as event_id,
            case
                when events.device_number % 1000 = 0 then lpad('7', 38, '7')
                else lpad(events.device_number::text, 38, '1')
            end as ecid,
            -- A clickstream's mix: mostly page views, some product views, a few
            -- cart additions and purchases (which carry revenue).
            case
                when events.event_number % 20 < 12 then 'page_view'
                when events.event_number % 20 < 17 then 'product_view'
                when events.event_number % 20 < 19 then 'add_to_cart'
                else 'purchase'
            end as event_type,
            -- One event a second, ending about now, so relative windows find them.
            now() - ({events} - events.event_number) * interval '1 second'
                as occurred_at,
            case
                when events.event_number % 5 = 0 then 'C' || events.owner_id
                when events.event_number % 5 = 3 and events.device_number % 50 = 0
                    then 'C' || (events.owner_id % {customers} + 1)
                when events.event_number % 5 = 4 and events.owner_id <= 20000
                    then 'C' || (events.owner_id + 1)
            end as customer_id,
            null::text as email,
            '/home' as page_url,
            'SKU-' || events.event_number % 500 as product_sku,
            case
                when events.event_number % 20 = 19 then (events.event_number % 300)::numeric
            end as revenue,
            'USD' as currency,
            {audit_event}
        from events
    """,
}


def create_sources(cursor, records: int) -> dict[str, int]:
    """Replace the validated tables with `records` synthetic source rows in total."""
    counts = {
        "customers": records * 2 // 10,
        "members": records // 10,
        "events": records * 7 // 10,
    }
    cursor.execute("drop schema if exists validated cascade")
    cursor.execute("create schema validated")

    for table, sql in TABLES.items():
        cursor.execute(
            sql.format(
                audit_person=AUDIT_COLUMNS.format(line="person_id"),
                audit_member=AUDIT_COLUMNS.format(line="member_id"),
                audit_event=AUDIT_COLUMNS.format(line="events.event_number"),
                **counts,
            )
        )
        cursor.execute(f"analyze validated.{table}")
        log.info("generated validated.%s", table)
    return counts


def create_chain(cursor, schema: str, length: int) -> None:
    """One path of `length` nodes whose ids are hashes, so no order helps."""
    cursor.execute(f"create schema if not exists {schema}")
    cursor.execute(f"drop table if exists {schema}.test_edges")
    cursor.execute(
        f"""
        create table {schema}.test_edges as
        select
            ('x' || substr(md5('chain' || step), 1, 15))::bit(60)::bigint as node_a,
            ('x' || substr(md5('chain' || (step + 1)), 1, 15))::bit(60)::bigint as node_b
        from generate_series(1, {length - 1}) as step
        """
    )
