"""The email_provider connector against a strict Mailchimp stand-in on localhost."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from cdp.activation.connectors import email_provider
from cdp.activation.connectors.base import PermanentError
from cdp.activation.connectors.email_provider import EmailProviderConnector
from cdp.vendors.email_provider import EmailProviderStandIn
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

LIST_ID = "a1b2c3d4e5"
SUBSCRIBE_PATH = rf"^/3\.0/lists/{LIST_ID}$"
SEGMENT_MEMBERS_PATH = r"/segments/\d+$"


@pytest.fixture
def vendor():
    yield from serve(EmailProviderStandIn(list_ids=(LIST_ID,)))


def email_destination(monkeypatch, vendor, **overrides):
    settings = dict(
        identities=("email",),
        attributes={"FNAME": "first_name"},
        batch_size=500,
        timeout_seconds=CLIENT_TIMEOUT,
        settings={"list_id": LIST_ID},
    )
    settings.update(overrides)
    return make_destination(monkeypatch, vendor, vendor.base_url, **settings)


@pytest.fixture
def connector(vendor, monkeypatch):
    connector = EmailProviderConnector(email_destination(monkeypatch, vendor))
    yield connector
    connector.close()


def people(count: int, start: int = 0):
    return [
        member(f"p{n}", email=f"person{n}@example.com", attributes={"FNAME": f"Name{n}"})
        for n in range(start, start + count)
    ]


def raw_client(vendor, key: str | None = None) -> httpx.Client:
    credentials = base64.b64encode(f"anyone:{key or vendor.token}".encode()).decode()
    return httpx.Client(base_url=vendor.base_url, headers={"Authorization": f"Basic {credentials}"})


def mailchimp_words(problem: dict) -> str:
    """A problem document's detail and each field error, as `field: message`."""
    fields = [f"{error['field']}: {error['message']}" for error in problem.get("errors", [])]
    return " ".join([problem["detail"], *fields])


# -- the happy path ---------------------------------------------------------------------


def test_open_audience_creates_the_segment_once_and_finds_it_again(vendor, connector):
    first = connector.open_audience(make_audience("vip_customers"))
    again = connector.open_audience(make_audience("vip_customers"))
    other = connector.open_audience(make_audience("lapsed_buyers"))

    assert first == again != other
    assert vendor.segments[first] == {"list_id": LIST_ID, "name": "vip_customers"}
    assert vendor.requests_received["create_segment"] == 2


def test_a_segment_is_found_on_a_later_page_of_the_list(vendor, connector, monkeypatch):
    monkeypatch.setattr(email_provider, "SEGMENT_PAGE_SIZE", 2)
    made = [connector.open_audience(make_audience(f"audience_{n}")) for n in range(5)]
    asked = vendor.requests_received["list_segments"]

    found = connector.open_audience(make_audience("audience_4"))
    missing = connector.open_audience(make_audience("audience_5"))

    assert found == made[4]
    assert missing not in made
    # Three pages of two to find the fifth; three more to learn the sixth is not there.
    assert vendor.requests_received["list_segments"] - asked == 6


def test_adds_then_removes_move_people_in_and_out_of_the_segment_only(vendor, connector):
    audience = opened(connector)
    segment = audience.vendor_audience_id
    everyone = people(5)

    added = connector.send(make_batch(audience, "add", everyone, number=1))
    removed = connector.send(make_batch(audience, "remove", everyone[:2], number=2))

    assert added.accepted == 5 and added.rejected == {}
    assert added.vendor_response["total_added"] == 5
    assert removed.accepted == 2 and removed.rejected == {}
    assert vendor.members[segment] == {f"person{n}@example.com" for n in (2, 3, 4)}
    assert all(vendor.applied_adds[(segment, f"person{n}@example.com")] == 1 for n in range(5))
    assert vendor.applied_removes[(segment, "person0@example.com")] == 1
    # Leaving the segment is not leaving the list, nor unsubscribing.
    on_list = vendor.lists[LIST_ID]
    assert on_list["person0@example.com"]["status"] == "subscribed"
    assert on_list["person3@example.com"]["merge_fields"] == {"FNAME": "Name3"}


def test_an_unsubscribed_person_is_not_subscribed_again(vendor, connector):
    audience = opened(connector)
    vendor.lists[LIST_ID]["person0@example.com"] = {"status": "unsubscribed", "merge_fields": {}}

    result = connector.send(make_batch(audience, "add", people(1)))

    assert result.accepted == 1
    assert vendor.lists[LIST_ID]["person0@example.com"]["status"] == "unsubscribed"


def test_two_profiles_sharing_an_address_are_sent_once_and_both_accepted(vendor, connector):
    audience = opened(connector)
    twins = [member("p1", email="shared@example.com"), member("p2", email="shared@example.com")]

    result = connector.send(make_batch(audience, "add", twins))

    assert result.accepted == 2
    assert vendor.applied_adds[(audience.vendor_audience_id, "shared@example.com")] == 1


# -- strictness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "complaint"),
    [
        ("Person@Example.com", "not normalised"),
        (" person@example.com", "not normalised"),
        ("person.example.com", "not a valid email address"),
        ("person@localhost", "not a valid email address"),
    ],
)
def test_unnormalised_or_malformed_addresses_are_refused_whole(vendor, email, complaint):
    with raw_client(vendor) as client:
        answer = client.post(
            f"/3.0/lists/{LIST_ID}",
            json={"members": [{"email_address": email, "status_if_new": "subscribed"}]},
        )

    assert answer.status_code == 400
    assert complaint in answer.json()["detail"]
    assert email.strip() not in answer.text  # errors never echo the address
    assert vendor.lists[LIST_ID] == {}


@pytest.mark.parametrize(
    ("path", "body", "status", "complaint"),
    [
        (f"/3.0/lists/{LIST_ID}", {"update_existing": True}, 400, "members is required"),
        (f"/3.0/lists/{LIST_ID}", {"members": [{"status": "subscribed"}]}, 400,
         "email_address: This value should not be blank"),
        (f"/3.0/lists/{LIST_ID}", {"members": [{"email_address": "a@example.com"}]}, 400,
         "status or status_if_new is required"),
        (f"/3.0/lists/{LIST_ID}",
         {"members": [{"email_address": "a@example.com", "status_if_new": "subscribed",
                       "merge_fields": {"first_name": "A"}}]}, 400, "is not a merge tag"),
        (f"/3.0/lists/{LIST_ID}",
         {"members": [{"email_address": f"p{n}@example.com", "status_if_new": "subscribed"}
                      for n in range(501)]}, 400, "at most 500 per request"),
        ("/3.0/lists/nolist/segments", {"name": "x", "static_segment": []}, 404, "does not exist"),
        (f"/3.0/lists/{LIST_ID}/segments", {"static_segment": []}, 400, "name is required"),
        (f"/3.0/lists/{LIST_ID}/segments/999", {"members_to_add": []}, 404, "does not exist"),
    ],
)  # fmt: skip
def test_requests_missing_fields_or_too_large_get_mailchimps_errors(
    vendor, path, body, status, complaint
):
    with raw_client(vendor) as client:
        answer = client.post(path, json=body)

    assert answer.status_code == status
    assert answer.json()["status"] == status
    assert complaint in mailchimp_words(answer.json())


def test_more_than_500_segment_members_are_refused(vendor, connector):
    segment = connector.open_audience(make_audience())
    with raw_client(vendor) as client:
        answer = client.post(
            f"/3.0/lists/{LIST_ID}/segments/{segment}",
            json={"members_to_add": [f"p{n}@example.com" for n in range(501)]},
        )

    assert answer.status_code == 400
    assert "at most 500" in answer.json()["detail"]


def test_bad_credentials_fail_for_good_with_the_vendors_words(vendor, monkeypatch):
    destination = make_destination(
        monkeypatch, vendor, vendor.base_url, token="wrong-key", settings={"list_id": LIST_ID}
    )
    connector = EmailProviderConnector(destination)

    with pytest.raises(PermanentError, match="401.*invalid or missing access token"):
        connector.open_audience(make_audience())
    connector.close()


def test_a_refused_request_fails_with_mailchimps_field_and_message(vendor, monkeypatch):
    # A profile attribute's name where Mailchimp wants a merge tag.
    destination = email_destination(monkeypatch, vendor, attributes={"first_name": "first_name"})
    connector = EmailProviderConnector(destination)
    audience = opened(connector)
    person = member("p1", email="a@example.com", attributes={"first_name": "A"})

    with pytest.raises(PermanentError) as refused:
        connector.send(make_batch(audience, "add", [person]))
    connector.close()

    assert str(refused.value) == (
        "email_provider_test answered 400: The resource submitted could not be validated. "
        "For field-specific details, see the 'errors' array; 'first_name' is not a merge tag "
        "(upper-case letters, digits or _, at most 10 characters, e.g. FNAME); fix the "
        "destination's attributes (at members[0].merge_fields)"
    )
    assert vendor.lists[LIST_ID] == {}


def test_a_destination_without_a_list_id_says_how_to_fix_it(vendor, monkeypatch):
    destination = make_destination(monkeypatch, vendor, vendor.base_url, settings={})

    with pytest.raises(PermanentError, match="settings.list_id is missing"):
        EmailProviderConnector(destination)


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SUBSCRIBE_PATH, SEGMENT_MEMBERS_PATH], ids=["list", "segment"])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_is_retryable_and_a_resent_batch_lands_once(vendor, connector, kind, path):
    audience = opened(connector)
    segment = audience.vendor_audience_id
    batch = make_batch(audience, "add", people(3))

    result = delivered_after_a_fault(vendor, connector, batch, kind, path)

    assert result.accepted == 3
    assert vendor.members[segment] == {f"person{n}@example.com" for n in range(3)}
    assert all(vendor.applied_adds[(segment, f"person{n}@example.com")] == 1 for n in range(3))


@pytest.mark.parametrize("kind", ["drop_after", "slow"])
def test_a_removal_whose_answer_was_lost_is_applied_once(vendor, connector, kind):
    audience = opened(connector)
    segment = audience.vendor_audience_id
    connector.send(make_batch(audience, "add", people(2), number=1))
    removal = make_batch(audience, "remove", people(1), number=2)

    result = delivered_after_a_fault(vendor, connector, removal, kind, SEGMENT_MEMBERS_PATH)

    assert result.accepted == 1 and result.rejected == {}
    assert vendor.members[segment] == {"person1@example.com"}
    assert vendor.applied_removes[(segment, "person0@example.com")] == 1


@pytest.mark.parametrize("path", [SUBSCRIBE_PATH, SEGMENT_MEMBERS_PATH], ids=["list", "segment"])
def test_rows_refused_inside_a_batch_come_back_by_profile_id(vendor, connector, path):
    audience = opened(connector)
    segment = audience.vendor_audience_id
    everyone = people(4)
    vendor.inject(Fault("partial", path_pattern=path, share=0.5))

    result = connector.send(make_batch(audience, "add", everyone, number=1))

    assert result.accepted == 2
    assert set(result.rejected) == {"p0", "p1"}
    assert all("try again" in reason for reason in result.rejected.values())
    assert vendor.members[segment] == {"person2@example.com", "person3@example.com"}

    # The next run sends the refused members again; now everyone is in, each once.
    retried = connector.send(make_batch(audience, "add", everyone[:2], run_key="run-2"))
    assert retried.accepted == 2 and retried.rejected == {}
    assert all(vendor.applied_adds[(segment, f"person{n}@example.com")] == 1 for n in range(4))


def test_an_address_not_on_the_list_is_refused_alone_not_the_whole_request(vendor, connector):
    audience = opened(connector)
    with raw_client(vendor) as client:
        answer = client.post(
            f"/3.0/lists/{LIST_ID}/segments/{audience.vendor_audience_id}",
            json={"members_to_add": ["stranger@example.com"]},
        )

    assert answer.status_code == 200
    assert answer.json()["errors"][0]["email_addresses"] == ["stranger@example.com"]
    assert vendor.members[audience.vendor_audience_id] == set()


def test_no_address_reaches_the_logs(vendor, connector, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow sets it to WARNING
    audience = opened(connector)

    connector.send(make_batch(audience, "add", people(3), number=1))
    connector.send(make_batch(audience, "remove", people(3), number=2))

    assert "segments" in caplog.text
    assert "@example.com" not in caplog.text
