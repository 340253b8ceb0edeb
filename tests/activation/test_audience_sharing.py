"""The audience_sharing connector against a strict audience manager stand-in on localhost."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cdp.activation.connectors.audience_sharing import AudienceSharingConnector
from cdp.activation.connectors.base import PermanentError
from cdp.vendors.audience_sharing import AudienceSharingStandIn
from cdp.vendors.stand_in import Fault
from tests.activation.connector_harness import (
    CLIENT_TIMEOUT,
    FAULT_KINDS,
    delivered_after_a_fault,
    make_audience,
    make_batch,
    make_destination,
    member,
    opened,
    serve,
)

ADD_PATH = r"memberships:batchAdd$"
REMOVE_PATH = r"memberships:batchRemove$"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def vendor():
    yield from serve(AudienceSharingStandIn())


@pytest.fixture
def connector(vendor, monkeypatch):
    destination = make_destination(
        monkeypatch,
        vendor,
        vendor.base_url,
        marketing_action="audience_sharing",
        identities=("email", "email_sha256", "phone_e164", "crm_id", "ecid"),
        attributes={"tier": "loyalty_tier"},
        batch_size=5_000,
        timeout_seconds=CLIENT_TIMEOUT,
    )
    connector = AudienceSharingConnector(destination)
    yield connector
    connector.close()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def person(n: int, realised_at=NOW, exited_at=None):
    email = f"person{n}@example.com"
    return member(
        f"p{n}",
        attributes={"tier": "gold"},
        realised_at=realised_at,
        exited_at=exited_at,
        email=[email, f"other{n}@example.com"],
        email_sha256=sha256(email),
        phone_e164=f"+4477009{n:05d}",
        crm_id=f"CRM-{n}",
    )


def raw_client(vendor) -> httpx.Client:
    return httpx.Client(
        base_url=vendor.base_url, headers={"Authorization": f"Bearer {vendor.token}"}
    )


def one_membership(**changes) -> dict:
    row = {
        "profile_id": "p1",
        "identities": [{"namespace": "crm_id", "value": "CRM-1"}],
        "realised_at": "2026-11-30T10:00:00+00:00",
        "exited_at": None,
        "attributes": {},
    }
    row.update(changes)
    return row


# -- metadata first ---------------------------------------------------------------------


def test_memberships_before_metadata_are_refused_with_the_fix(vendor, connector):
    unknown = make_audience("vip_customers", vendor_audience_id="vip_customers")

    with pytest.raises(PermanentError, match="409.*send PUT /v1/audiences/vip_customers"):
        connector.send(make_batch(unknown, "add", [person(1)]))

    assert vendor.memberships["vip_customers"] == {}


def test_open_audience_sends_the_metadata_every_time(vendor, connector):
    first = connector.open_audience(make_audience("vip_customers"))
    renamed = dataclasses.replace(make_audience("vip_customers"), owner="growth@example.com")
    again = connector.open_audience(renamed)

    assert first == again == "vip_customers"
    assert vendor.audiences["vip_customers"] == {
        "name": "Vip Customers",
        "description": "Customers the CRM team looks after by hand",
        "owner": "growth@example.com",
        "evaluation_mode": "batch",
    }


# -- the happy path ---------------------------------------------------------------------


def test_adds_then_removes_with_every_identity_of_each_member(vendor, connector):
    audience = opened(connector)
    everyone = [person(n) for n in range(4)]

    added = connector.send(make_batch(audience, "add", everyone, number=1))
    leaving = [dataclasses.replace(person(n), exited_at=NOW + timedelta(days=1)) for n in (0, 1)]
    removed = connector.send(make_batch(audience, "remove", leaving, number=2))

    assert added.accepted == 4 and added.vendor_response["opened"] == 4
    assert removed.accepted == 2 and removed.vendor_response["closed"] == 2
    assert vendor.members["vip_customers"] == {"p2", "p3"}
    assert all(vendor.applied_adds[("vip_customers", f"p{n}")] == 1 for n in range(4))
    assert vendor.applied_removes[("vip_customers", "p0")] == 1

    period = vendor.memberships["vip_customers"][("p0", NOW)]
    assert period["exited_at"] == NOW + timedelta(days=1)
    assert period["attributes"] == {"tier": "gold"}
    assert sorted((i["namespace"], i["value"]) for i in period["identities"]) == sorted(
        [
            ("crm_id", "CRM-0"),
            ("email", "other0@example.com"),
            ("email", "person0@example.com"),
            ("email_sha256", sha256("person0@example.com")),
            ("phone_e164", "+447700900000"),
        ]
    )


def test_a_backfill_of_history_arrives_intact(vendor, connector):
    audience = opened(connector)
    day = timedelta(days=1)
    history = [
        person(1, realised_at=NOW - 90 * day, exited_at=NOW - 60 * day),
        person(1, realised_at=NOW - 30 * day, exited_at=NOW - 20 * day),
        person(1, realised_at=NOW - 5 * day),  # and a member again now
        # As the ledger's JSON payload holds them: ISO strings.
        person(2, realised_at="2026-06-01T08:30:00+00:00", exited_at="2026-07-01T08:30:00+00:00"),
    ]

    result = connector.send(make_batch(audience, "add", history))

    assert result.accepted == 4
    assert result.vendor_response["history"] == 3 and result.vendor_response["opened"] == 1
    kept = {
        key: (period["realised_at"], period["exited_at"])
        for key, period in vendor.memberships["vip_customers"].items()
    }
    june, july = datetime(2026, 6, 1, 8, 30, tzinfo=UTC), datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert kept == {
        ("p1", NOW - 90 * day): (NOW - 90 * day, NOW - 60 * day),
        ("p1", NOW - 30 * day): (NOW - 30 * day, NOW - 20 * day),
        ("p1", NOW - 5 * day): (NOW - 5 * day, None),
        ("p2", june): (june, july),
    }
    assert vendor.members["vip_customers"] == {"p1"}  # p2's only period has ended


def test_the_same_membership_under_a_new_key_is_updated_not_doubled(vendor, connector):
    audience = opened(connector)
    connector.send(make_batch(audience, "add", [person(1)], run_key="run-1"))

    again = connector.send(make_batch(audience, "add", [person(1)], run_key="run-2"))

    assert again.vendor_response["unchanged"] == 1
    assert vendor.applied_adds[("vip_customers", "p1")] == 1
    assert len(vendor.memberships["vip_customers"]) == 1


# -- strictness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        (one_membership(identities=[{"namespace": "twitter", "value": "x"}]), "is unknown"),
        (one_membership(identities=[{"namespace": "email_sha256", "value": "a@example.com"}]),
         "64 lower-case hex"),
        (one_membership(identities=[{"namespace": "email_sha256", "value": sha256("a").upper()}]),
         "64 lower-case hex"),
        (one_membership(identities=[{"namespace": "email", "value": "A@Example.com"}]),
         "lower-cased email"),
        (one_membership(identities=[{"namespace": "phone_e164", "value": "07700900123"}]),
         "E.164"),
        (one_membership(identities=[]), "at least one identity"),
        (one_membership(realised_at="2026-11-30T10:00:00"), "with a UTC offset"),
        (one_membership(realised_at="yesterday"), "with a UTC offset"),
        (one_membership(realised_at=None), "realised_at is required"),
        ({k: v for k, v in one_membership().items() if k != "exited_at"},
         "send null for an open period"),
        (one_membership(exited_at="2026-11-01T00:00:00Z"), "exited_at is before realised_at"),
        (one_membership(profile_id=""), "profile_id is required"),
    ],
)  # fmt: skip
def test_bad_memberships_get_the_managers_400(vendor, connector, row, complaint):
    opened(connector)
    with raw_client(vendor) as client:
        answer = client.post(
            "/v1/audiences/vip_customers/memberships:batchAdd", json={"memberships": [row]}
        )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_argument"
    assert complaint in answer.json()["error"]["message"]
    assert "a@example.com" not in answer.text.lower()
    assert vendor.memberships["vip_customers"] == {}


def test_more_than_5000_memberships_are_refused(vendor, connector):
    opened(connector)
    rows = [one_membership(profile_id=f"p{n}") for n in range(5_001)]
    with raw_client(vendor) as client:
        answer = client.post(
            "/v1/audiences/vip_customers/memberships:batchAdd", json={"memberships": rows}
        )

    assert answer.status_code == 400
    assert "at most 5000" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"name": "VIP", "description": "", "evaluation_mode": "batch"}, "owner is required"),
        ({"name": "", "description": "", "owner": "", "evaluation_mode": "batch"},
         "name must not be empty"),
        ({"name": "VIP", "description": "", "owner": "", "evaluation_mode": "hourly"},
         "batch or streaming"),
    ],
)  # fmt: skip
def test_bad_metadata_is_refused(vendor, body, complaint):
    with raw_client(vendor) as client:
        answer = client.put("/v1/audiences/vip_customers", json=body)

    assert answer.status_code == 400
    assert complaint in answer.json()["error"]["message"]
    assert vendor.audiences == {}


def test_bad_credentials_fail_for_good_with_the_vendors_words(vendor, monkeypatch):
    destination = make_destination(monkeypatch, vendor, vendor.base_url, token="wrong")
    connector = AudienceSharingConnector(destination)

    with pytest.raises(PermanentError, match="401.*invalid or missing access token"):
        connector.open_audience(make_audience())
    connector.close()


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_is_retryable_and_a_resent_batch_lands_once(vendor, connector, kind):
    audience = opened(connector)
    batch = make_batch(audience, "add", [person(n) for n in range(3)])

    result = delivered_after_a_fault(vendor, connector, batch, kind, ADD_PATH)

    assert result.accepted == 3
    assert vendor.members["vip_customers"] == {"p0", "p1", "p2"}
    assert all(vendor.applied_adds[("vip_customers", f"p{n}")] == 1 for n in range(3))
    if kind in ("drop_after", "slow"):
        # Applied on the first try; the resend was answered from the idempotency key.
        assert vendor.requests_received["batch_add"] == 1


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_on_a_removal_is_retryable_and_lands_once(vendor, connector, kind):
    audience = opened(connector)
    connector.send(make_batch(audience, "add", [person(n) for n in range(2)], number=1))
    leaving = [dataclasses.replace(person(0), exited_at=NOW + timedelta(hours=1))]
    removal = make_batch(audience, "remove", leaving, number=2)

    result = delivered_after_a_fault(vendor, connector, removal, kind, REMOVE_PATH)

    assert result.accepted == 1
    assert vendor.members["vip_customers"] == {"p1"}
    assert vendor.applied_removes[("vip_customers", "p0")] == 1


def test_rows_refused_inside_a_batch_come_back_by_profile_id(vendor, connector):
    audience = opened(connector)
    everyone = [person(n) for n in range(4)]
    vendor.inject(Fault("partial", path_pattern=ADD_PATH, share=0.5))

    result = connector.send(make_batch(audience, "add", everyone, number=1))

    assert result.accepted == 2
    assert result.rejected == {
        "p0": "temporarily unavailable, send again",
        "p1": "temporarily unavailable, send again",
    }
    assert vendor.members["vip_customers"] == {"p2", "p3"}

    retried = connector.send(make_batch(audience, "add", everyone[:2], run_key="run-2"))
    assert retried.accepted == 2 and retried.rejected == {}
    assert all(vendor.applied_adds[("vip_customers", f"p{n}")] == 1 for n in range(4))


def test_no_identity_reaches_the_logs(vendor, connector, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow sets it to WARNING
    audience = opened(connector)

    connector.send(make_batch(audience, "add", [person(1)], number=1))

    assert "batchAdd" in caplog.text
    assert "@example.com" not in caplog.text and "+44" not in caplog.text
