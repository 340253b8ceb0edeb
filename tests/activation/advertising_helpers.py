"""What the Meta and Google connector tests share: people, batches, and a runner's retry loop.

People are written the way they sit in a CRM (mixed case, spaces, national phone
formatting); the helpers normalise and hash them by each vendor's published rules, so
the tests state independently what the vendor must end up holding.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from types import SimpleNamespace

from cdp.activation.connectors.base import Audience, Batch, Member
from cdp.activation.delivery import idempotency_key
from cdp.vendors.stand_in import StandInVendor
from tests.activation.connector_harness import deliver

# The runner's retry loop is the harness's; the Google tests know it by this name.
send_like_the_runner = deliver

TOKEN = StandInVendor.token

# (profile id, email as typed, phone as typed with its country code)
PEOPLE = [
    ("p-001", "  Dana.M@Example.com ", "+44 7700 900123"),
    ("p-002", "ALEXJ@example.com", "+1 (415) 555-0101"),
    ("p-003", "quinn@CYMBALGROUP.com", None),
    ("p-004", None, "+33 6 12 34 56 78"),
    ("p-005", "rosario@example.org", "+49 151 2345 6789"),
    ("p-006", "sam@example.net", "+44 7700 900456"),
]

AUDIENCE = Audience(
    audience_id="lapsed_buyers",
    name="Lapsed buyers",
    description="Bought before, nothing for 90 days",
    owner="crm-team",
    evaluation_mode="batch",
)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalised_email(raw: str) -> str:
    return raw.strip().lower()


def e164(raw: str) -> str:
    return "+" + re.sub(r"\D", "", raw)


def identities_of(email: str | None, phone: str | None) -> dict[str, list[str]]:
    """Every hashed kind the two vendors take, as the planning query would send them."""
    identities = {}
    if email:
        identities["email_sha256"] = [sha256_hex(normalised_email(email))]
    if phone:
        identities["phone_sha256"] = [sha256_hex(e164(phone))]  # Google: with '+'
        identities["phone_digits_sha256"] = [sha256_hex(e164(phone)[1:])]  # Meta: digits
    return identities


def members(people=PEOPLE) -> tuple[Member, ...]:
    return tuple(Member(pid, identities_of(email, phone)) for pid, email, phone in people)


def destination(kind: str, identities: tuple[str, ...], settings: dict, **overrides):
    fields = {
        "name": f"test_{kind}",
        "type": kind,
        "connection_id": f"test_{kind}",
        "marketing_action": "advertising",
        "identities": identities,
        "attributes": {},
        "batch_size": 10_000,
        "rate_limit_per_second": None,
        "timeout_seconds": 2.0,
        "settings": settings,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def point_connection_at(monkeypatch, destination, base_url: str, token: str = TOKEN) -> None:
    connection = {"conn_type": "http", "host": base_url, "password": token, "extra": {}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{destination.connection_id.upper()}", json.dumps(connection))


def batch_of(
    destination,
    vendor_audience_id: str,
    operation: str,
    batch_members,
    number: int = 1,
    total: int = 1,
    run_key: str = "run-1",
) -> Batch:
    audience = replace(AUDIENCE, vendor_audience_id=vendor_audience_id)
    key = idempotency_key(destination.name, audience.audience_id, run_key, number)
    return Batch(
        destination=destination.name,
        audience=audience,
        run_key=run_key,
        number=number,
        total=total,
        operation=operation,
        members=tuple(batch_members),
        idempotency_key=key,
    )
