"""A warehouse holding just what activation reads, filled by hand, for activation tests.

dbt builds these relations in production (`act_audience_members`, `dim_audiences`,
`dim_profiles`, `bdg_profile_identities`, `fct_audience_membership_history`); here
each test states its audience row by row, so the expected deliveries are plain to
read. The end-to-end test covers the relations dbt builds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cdp import warehouse
from cdp.activation.destinations import DESTINATION_TYPES, Destination, RetryPolicy

AUDIENCE = "engaged_browsers"


@dataclass(frozen=True)
class Person:
    profile_id: str
    email: str | None = None
    phone: str | None = None
    customer_id: str | None = None
    email_consent: bool = True
    sms_consent: bool = True
    ads_consent: bool = True
    country: str | None = "GB"
    devices: tuple[str, ...] = field(default=())


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def make_destination(type_name: str, **overrides) -> Destination:
    """A destination as a file would declare it, with the type's defaults."""
    kind = DESTINATION_TYPES[type_name]
    settings = {
        "email_provider": {"list_id": "newsletter"},
        "meta_custom_audiences": {"ad_account_id": "1234", "api_version": "v21.0"},
        "google_customer_match": {
            "operating_account_type": "GOOGLE_ADS",
            "operating_account_id": "9876",
            "user_lists": {AUDIENCE: "5550001", "vip_customers": "5550002"},
        },
    }.get(type_name, {})
    action = {"sms_provider": "sms", "meta_custom_audiences": "advertising",
              "google_customer_match": "advertising",
              "audience_sharing": "audience_sharing"}.get(type_name, "email")  # fmt: skip
    values = dict(
        name=f"test_{type_name}",
        description="",
        type=type_name,
        connection_id=f"test_{type_name}",
        marketing_action=action,
        identities=kind.identities if type_name != "file_export" else ("email_sha256",),
        identity_match=kind.identity_match,
        attributes={},
        audiences=(AUDIENCE,),
        schedule="after_each_build",
        export_mode="additions_and_removals",
        batch_size=kind.max_batch_size,
        rate_limit_per_second=None,
        timeout_seconds=0.5,
        retry=RetryPolicy(attempts=6, initial_backoff_seconds=0.05, max_backoff_seconds=1.0),
        settings=settings,
        location=None,
        file_format="csv",
        declared_in=Path(f"test_{type_name}.yml"),
    )
    values.update(overrides)
    return Destination(**values)


def set_audience(people: list[Person], audience: str = AUDIENCE) -> None:
    """Make `people` the audience's current members (and the only profiles)."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        _create_tables(cursor)
        cursor.execute(
            "insert into marts.dim_audiences values (%s, %s, %s, 'growth-team', 'batch')"
            " on conflict do nothing",
            (audience, audience.replace("_", " ").title(), f"Test audience {audience}"),
        )
        cursor.execute("delete from activation.act_audience_members where audience_id = %s",
                       (audience,))  # fmt: skip
        for person in people:
            cursor.execute(
                "insert into activation.act_audience_members values"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
                (
                    audience, person.profile_id, person.customer_id, None, person.email,
                    sha256(person.email) if person.email else None, person.phone,
                    person.email_consent, person.sms_consent, person.ads_consent,
                    audience,
                ),
            )  # fmt: skip
            _upsert_profile(cursor, person)


def set_history(ranges: list[tuple[str, datetime, datetime | None]], audience: str = AUDIENCE):
    """The audience's membership history: (profile_id, valid_from, valid_to) ranges."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        _create_tables(cursor)
        cursor.execute(
            "delete from marts.fct_audience_membership_history where audience_id = %s",
            (audience,),
        )
        for profile_id, valid_from, valid_to in ranges:
            cursor.execute(
                "insert into marts.fct_audience_membership_history values (%s, %s, %s, %s)",
                (audience, profile_id, valid_from, valid_to),
            )


def add_profiles(people: list[Person]) -> None:
    """Profiles that exist without being members (history only, say)."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        _create_tables(cursor)
        for person in people:
            _upsert_profile(cursor, person)


def _upsert_profile(cursor, person: Person) -> None:
    cursor.execute(
        "insert into marts.dim_profiles values (%s, %s, %s, %s) on conflict (profile_id)"
        " do update set country = excluded.country",
        (person.profile_id, person.country, "Ann", "AB1 2CD"),
    )
    cursor.execute("delete from marts.bdg_profile_identities where profile_id = %s",
                   (person.profile_id,))  # fmt: skip
    identities = [("email", person.email), ("phone", person.phone), ("crm_id", person.customer_id)]
    identities += [("ecid", device) for device in person.devices]
    for namespace, value in identities:
        if value is not None:
            cursor.execute(
                "insert into marts.bdg_profile_identities values (%s, %s, %s)",
                (person.profile_id, namespace, value),
            )


def _create_tables(cursor) -> None:
    cursor.execute(
        """
        create schema if not exists activation;
        create schema if not exists marts;
        create table if not exists marts.dim_audiences (
            audience_id text primary key, audience_name text, description text, owner text,
            evaluation_mode text
        );
        create table if not exists activation.act_audience_members (
            audience_id text, profile_id text, customer_id text, loyalty_id text, email text,
            email_sha256 text, phone_e164 text, has_email_consent boolean,
            has_sms_consent boolean, has_ads_consent boolean, audience_name text,
            qualified_at timestamptz
        );
        create table if not exists marts.dim_profiles (
            profile_id text primary key, country text, first_name text, postal_code text
        );
        create table if not exists marts.bdg_profile_identities (
            profile_id text, namespace text, identity_value text
        );
        create table if not exists marts.fct_audience_membership_history (
            audience_id text, profile_id text, valid_from timestamptz, valid_to timestamptz
        );
        """
    )
