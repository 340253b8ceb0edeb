"""The sms_provider connector against a strict Klaviyo stand-in on localhost."""

from __future__ import annotations

import logging

import httpx
import pytest

from cdp.activation.connectors import sms_provider
from cdp.activation.connectors.base import PermanentError
from cdp.activation.connectors.sms_provider import REVISION, SmsProviderConnector
from cdp.vendors.sms_provider import SmsProviderStandIn
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

SUBSCRIBE_PATH = r"^/api/profile-subscription-bulk-create-jobs"
REMOVE_PATH = r"/relationships/profiles$"
LOOKUP_PATH = r"^/api/lists/\w+/profiles$"


@pytest.fixture
def vendor():
    yield from serve(SmsProviderStandIn())


def sms_destination(monkeypatch, vendor, **overrides):
    settings = dict(
        identities=("phone_e164",),
        marketing_action="sms",
        batch_size=100,
        timeout_seconds=CLIENT_TIMEOUT,
    )
    settings.update(overrides)
    return make_destination(monkeypatch, vendor, vendor.base_url, **settings)


@pytest.fixture
def connector(vendor, monkeypatch):
    connector = SmsProviderConnector(sms_destination(monkeypatch, vendor))
    yield connector
    connector.close()


def phone(n: int) -> str:
    return f"+4477009{n:05d}"


def people(count: int, start: int = 0):
    return [member(f"p{n}", phone_e164=phone(n)) for n in range(start, start + count)]


def raw_client(vendor, revision: str | None = REVISION) -> httpx.Client:
    headers = {"Authorization": f"Klaviyo-API-Key {vendor.token}"}
    if revision is not None:
        headers["revision"] = revision
    return httpx.Client(base_url=vendor.base_url, headers=headers)


def subscribe_job(profiles: list[dict], list_id: str | None = None) -> dict:
    job = {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"profiles": {"data": profiles}},
    }
    if list_id:
        job["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": job}


def sms_profile(number: str, consent: bool = True) -> dict:
    attributes = {"phone_number": number}
    if consent:
        attributes["subscriptions"] = {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}
    return {"type": "profile", "attributes": attributes}


# -- the happy path ---------------------------------------------------------------------


def test_open_audience_creates_the_list_once_and_finds_it_again(vendor, connector):
    first = connector.open_audience(make_audience("vip_customers"))
    again = connector.open_audience(make_audience("vip_customers"))
    other = connector.open_audience(make_audience("lapsed_buyers"))

    assert first == again != other
    assert vendor.lists[first] == {"name": "vip_customers"}
    assert vendor.requests_received["create_list"] == 2


def test_a_list_named_in_settings_is_used_and_a_wrong_one_fails_clearly(vendor, monkeypatch):
    vendor.lists["Y6nRLr"] = {"name": "chosen by hand"}
    chosen = SmsProviderConnector(
        sms_destination(monkeypatch, vendor, settings={"lists": {"vip_customers": "Y6nRLr"}})
    )
    wrong = SmsProviderConnector(
        sms_destination(monkeypatch, vendor, settings={"lists": {"vip_customers": "NoSuch"}})
    )

    assert chosen.open_audience(make_audience("vip_customers")) == "Y6nRLr"
    with pytest.raises(PermanentError, match="404.*list NoSuch does not exist"):
        wrong.open_audience(make_audience("vip_customers"))
    assert vendor.requests_received["create_list"] == 0


def test_adds_subscribe_with_consent_and_removes_leave_consent_alone(vendor, connector):
    audience = opened(connector)
    list_id = audience.vendor_audience_id
    everyone = people(5)

    added = connector.send(make_batch(audience, "add", everyone, number=1))
    removed = connector.send(make_batch(audience, "remove", everyone[:2], number=2))

    assert added.accepted == 5 and added.rejected == {}
    assert removed.accepted == 2 and removed.vendor_response == {"removed": 2, "not_on_list": 0}
    assert vendor.members[list_id] == {phone(n) for n in (2, 3, 4)}
    assert all(vendor.applied_adds[(list_id, phone(n))] == 1 for n in range(5))
    assert vendor.applied_removes[(list_id, phone(0))] == 1
    # Off the list, but still subscribed: leaving an audience is not an unsubscribe.
    assert vendor.sms_consent[phone(0)] == "SUBSCRIBED"


def test_a_removal_finds_its_profiles_over_several_lookup_pages(vendor, connector, monkeypatch):
    monkeypatch.setattr(sms_provider, "LOOKUP_PAGE_SIZE", 2)
    audience = opened(connector)
    everyone = people(6)
    connector.send(make_batch(audience, "add", everyone, number=1))

    removed = connector.send(make_batch(audience, "remove", everyone[:5], number=2))

    assert removed.vendor_response == {"removed": 5, "not_on_list": 0}
    assert vendor.requests_received["list_profiles"] == 3
    assert vendor.members[audience.vendor_audience_id] == {phone(5)}


# -- strictness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "complaint"),
    [
        ("07700900123", "E.164"),
        ("+44 7700 900123", "E.164"),
        ("+4477009001234567", "E.164"),
        ("447700900123", "E.164"),
    ],
)
def test_phones_not_in_e164_are_refused(vendor, number, complaint):
    with raw_client(vendor) as client:
        answer = client.post(
            "/api/profile-subscription-bulk-create-jobs", json=subscribe_job([sms_profile(number)])
        )

    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert complaint in error["detail"]
    assert error["source"]["pointer"] == "/data/attributes/profiles/data/0/attributes/phone_number"
    assert number not in answer.text
    assert vendor.profiles == {}


@pytest.mark.parametrize(
    ("revision", "complaint"),
    [(None, "revision header is required"), ("July", "must be a date"), ("2023-02-22", "retired")],
)
def test_a_missing_or_wrong_revision_header_is_refused(vendor, revision, complaint):
    with raw_client(vendor, revision=revision) as client:
        answer = client.get("/api/lists")

    assert answer.status_code == 400
    assert complaint in answer.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"data": {"type": "profile-subscription-bulk-create-job", "attributes": {}}},
         "profiles.data must list"),
        (subscribe_job([sms_profile(phone(1), consent=False)]),
         "subscriptions.sms.marketing.consent"),
        (subscribe_job([{"type": "profile", "attributes": {"subscriptions": {}}}]),
         "phone_number is required"),
        (subscribe_job([sms_profile(phone(n)) for n in range(1001)]), "at most 1000"),
        ({"data": {"type": "profile-subscription-bulk-delete-job"}}, "data.type must be"),
    ],
)  # fmt: skip
def test_jobs_missing_fields_consent_or_too_large_are_refused(vendor, body, complaint):
    with raw_client(vendor) as client:
        answer = client.post("/api/profile-subscription-bulk-create-jobs", json=body)

    assert answer.status_code == 400
    assert complaint in answer.json()["errors"][0]["detail"]
    assert vendor.profiles == {}


def test_list_pages_over_100_and_unknown_lists_are_refused(vendor, connector):
    list_id = connector.open_audience(make_audience())
    with raw_client(vendor) as client:
        oversize = client.get(f"/api/lists/{list_id}/profiles", params={"page[size]": "101"})
        unknown = client.post(
            "/api/profile-subscription-bulk-create-jobs",
            json=subscribe_job([sms_profile(phone(1))], list_id="NoSuch"),
        )

    assert oversize.status_code == 400
    assert "page[size]" in oversize.json()["errors"][0]["detail"]
    assert unknown.status_code == 404


def test_bad_credentials_fail_for_good_with_the_vendors_words(vendor, monkeypatch):
    connector = SmsProviderConnector(sms_destination(monkeypatch, vendor, token="pk_wrong"))

    with pytest.raises(PermanentError, match="401.*invalid or missing access token"):
        connector.open_audience(make_audience())
    connector.close()


def test_a_refused_job_fails_with_klaviyos_detail_and_pointer(vendor, connector):
    audience = opened(connector)
    national = member("p1", phone_e164="07700900123")  # a number normalisation missed

    with pytest.raises(PermanentError) as refused:
        connector.send(make_batch(audience, "add", [national]))

    assert str(refused.value) == (
        "sms_provider_test answered 400: phone_number must be in E.164 format: +, country "
        "code, number, no spaces (at /data/attributes/profiles/data/0/attributes/phone_number)"
    )
    assert vendor.members[audience.vendor_audience_id] == set()


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_on_an_add_is_retryable_and_lands_once(vendor, connector, kind):
    audience = opened(connector)
    list_id = audience.vendor_audience_id
    batch = make_batch(audience, "add", people(3))

    result = delivered_after_a_fault(vendor, connector, batch, kind, SUBSCRIBE_PATH)

    assert result.accepted == 3
    assert vendor.members[list_id] == {phone(n) for n in range(3)}
    assert all(vendor.applied_adds[(list_id, phone(n))] == 1 for n in range(3))


@pytest.mark.parametrize("path", [LOOKUP_PATH, REMOVE_PATH], ids=["lookup", "delete"])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_on_a_removal_is_retryable_and_lands_once(vendor, connector, kind, path):
    audience = opened(connector)
    list_id = audience.vendor_audience_id
    connector.send(make_batch(audience, "add", people(3), number=1))
    removal = make_batch(audience, "remove", people(2), number=2)

    result = delivered_after_a_fault(vendor, connector, removal, kind, path)

    assert result.accepted == 2
    assert vendor.members[list_id] == {phone(2)}
    assert all(vendor.applied_removes[(list_id, phone(n))] == 1 for n in range(2))


def test_a_partial_fault_cannot_apply_to_an_asynchronous_job(vendor, connector):
    audience = opened(connector)
    vendor.inject(Fault("partial", path_pattern=SUBSCRIBE_PATH, share=0.5))

    result = connector.send(make_batch(audience, "add", people(4)))

    assert result.accepted == 4 and result.rejected == {}
    assert vendor.members[audience.vendor_audience_id] == {phone(n) for n in range(4)}


def test_a_member_without_a_phone_is_refused_alone(vendor, connector):
    audience = opened(connector)
    batch = make_batch(audience, "add", [*people(1), member("p9", email="x@example.com")])

    result = connector.send(batch)

    assert result.accepted == 1
    assert result.rejected == {"p9": "no phone_e164 identity to send"}


def test_no_phone_number_reaches_the_logs(vendor, connector, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow sets it to WARNING
    audience = opened(connector)
    everyone = people(3)

    connector.send(make_batch(audience, "add", everyone, number=1))
    connector.send(make_batch(audience, "remove", everyone, number=2))

    assert "/profiles" in caplog.text  # the lookup was logged, without its filter
    assert not any(phone(n) in caplog.text or phone(n)[1:] in caplog.text for n in range(3))
