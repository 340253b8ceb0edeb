"""The Meta connector against the strict Meta stand-in, on a real localhost server."""

from __future__ import annotations

import httpx
import pytest

from cdp.activation.connectors.base import (
    PermanentError,
    RemovalRefused,
    RetryableError,
)
from cdp.activation.connectors.meta_custom_audiences import (
    SCHEMA_KEYS,
    MetaCustomAudiencesConnector,
    custom_audience_name,
)
from cdp.activation.destinations import DESTINATION_TYPES
from cdp.vendors.meta_custom_audiences import MetaCustomAudiencesStandIn
from cdp.vendors.stand_in import Fault
from tests.activation.advertising_helpers import (
    AUDIENCE,
    PEOPLE,
    TOKEN,
    batch_of,
    destination,
    e164,
    members,
    normalised_email,
    point_connection_at,
    sha256_hex,
)
from tests.activation.connector_harness import (
    CLIENT_TIMEOUT,
    FAULT_KINDS,
    deliver,
    delivered_after_a_fault,
    serve,
)

VERSION = "v25.0"
ACCOUNT = "1234567890"


def meta_hashes(people) -> set[str]:
    """What Meta must hold: SHA-256 of the lower-cased email and of the E.164 digits."""
    expected = set()
    for _pid, email, phone in people:
        if email:
            expected.add(sha256_hex(normalised_email(email)))
        if phone:
            expected.add(sha256_hex(e164(phone).removeprefix("+")))
    return expected


@pytest.fixture
def vendor():
    yield from serve(MetaCustomAudiencesStandIn())


@pytest.fixture
def meta_destination(vendor, monkeypatch):
    target = destination(
        "meta_custom_audiences",
        ("email_sha256", "phone_digits_sha256"),
        {"ad_account_id": f"act_{ACCOUNT}", "api_version": VERSION},
        timeout_seconds=CLIENT_TIMEOUT,
    )
    point_connection_at(monkeypatch, target, vendor.base_url)
    return target


@pytest.fixture
def connector(meta_destination):
    opened = MetaCustomAudiencesConnector(meta_destination)
    yield opened
    opened.close()


def test_open_audience_creates_a_customer_list_once_and_finds_it_again(
    vendor, meta_destination, connector
):
    audience_id = connector.open_audience(AUDIENCE)

    created = vendor.audiences[audience_id]
    assert created["account"] == ACCOUNT
    assert created["subtype"] == "CUSTOM"
    assert created["customer_file_source"] == "USER_PROVIDED_ONLY"
    assert created["name"] == custom_audience_name(AUDIENCE)

    again = MetaCustomAudiencesConnector(meta_destination)
    assert again.open_audience(AUDIENCE) == audience_id
    assert len(vendor.audiences) == 1


def test_adds_then_removes_hold_exactly_the_hashes_meta_expects(
    vendor, meta_destination, connector
):
    audience_id = connector.open_audience(AUDIENCE)

    added = connector.send(batch_of(meta_destination, audience_id, "add", members(), 1, 2))

    assert added.accepted == len(PEOPLE)
    assert added.rejected == {}
    assert vendor.members[audience_id] == meta_hashes(PEOPLE)
    assert set(vendor.applied_adds.values()) == {1}
    assert added.vendor_response["num_received"] == len(PEOPLE)

    leaving, staying = PEOPLE[:2], PEOPLE[2:]
    removed = connector.send(
        batch_of(meta_destination, audience_id, "remove", members(leaving), 2, 2)
    )

    assert removed.accepted == len(leaving)
    assert vendor.members[audience_id] == meta_hashes(staying)
    assert len(vendor.people[audience_id]) == len(staying)


def test_a_member_with_no_identity_meta_takes_is_refused_without_sending(
    vendor, meta_destination, connector
):
    audience_id = connector.open_audience(AUDIENCE)
    only_google = members()[0].__class__("p-900", {"phone_sha256": [sha256_hex("+15550100")]})

    result = connector.send(
        batch_of(meta_destination, audience_id, "add", (*members(PEOPLE[:1]), only_google))
    )

    assert result.accepted == 1
    assert set(result.rejected) == {"p-900"}
    assert vendor.members[audience_id] == meta_hashes(PEOPLE[:1])


def test_every_identity_a_meta_destination_may_declare_has_a_schema_key():
    assert set(SCHEMA_KEYS) == set(DESTINATION_TYPES["meta_custom_audiences"].identities)


def test_a_kind_meta_cannot_take_stops_a_destination_built_by_hand():
    by_hand = destination(
        "meta_custom_audiences", ("email_sha256", "phone_sha256"), {"ad_account_id": ACCOUNT}
    )

    with pytest.raises(PermanentError) as refused:
        MetaCustomAudiencesConnector(by_hand)

    assert str(refused.value) == (
        "destination test_meta_custom_audiences: Meta has no schema key for identity "
        "'phone_sha256'; `cdp destinations check` lists the identities meta_custom_audiences "
        "accepts"
    )


# -- strictness, spoken to directly -----------------------------------------------------


def users_request(vendor, audience_id, payload, session=..., token=TOKEN, method="POST"):
    body = {"payload": payload}
    if session is not ...:
        body["session"] = session
    return httpx.request(
        method,
        f"{vendor.base_url}/{VERSION}/{audience_id}/users",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


SESSION = {"session_id": 77, "batch_seq": 1, "last_batch_flag": True, "estimated_num_total": 1}
GOOD_HASH = sha256_hex("dana.m@example.com")


@pytest.mark.parametrize(
    ("payload", "session", "words"),
    [
        ({"schema": ["EMAIL"], "data": [["dana.m@example.com"]]}, SESSION, "not a SHA-256"),
        ({"schema": ["EMAIL"], "data": [[GOOD_HASH.upper()]]}, SESSION, "not a SHA-256"),
        ({"schema": ["EMAIL"], "data": [[GOOD_HASH]] * 10_001}, SESSION, "at most 10000"),
        ({"schema": ["EMAIL", "PHONE"], "data": [[GOOD_HASH]]}, SESSION, "schema has 2 keys"),
        ({"schema": ["E_MAIL"], "data": [[GOOD_HASH]]}, SESSION, "Unknown schema key"),
        ({"data": [[GOOD_HASH]]}, SESSION, "schema is required"),
        ({"schema": ["EMAIL"], "data": [[GOOD_HASH]]}, None, "session is required"),
        (
            {"schema": ["EMAIL"], "data": [[GOOD_HASH]]},
            {"session_id": 77, "last_batch_flag": True},
            "session.batch_seq is required",
        ),
    ],
    ids=["unhashed", "upper-hex", "10001-rows", "width", "unknown-key", "no-schema",
         "no-session", "no-batch-seq"],
)  # fmt: skip
def test_the_stand_in_refuses_what_meta_refuses(vendor, connector, payload, session, words):
    audience_id = connector.open_audience(AUDIENCE)

    answer = users_request(vendor, audience_id, payload, session)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert words in error["message"]
    assert error["type"] == "OAuthException"
    assert error["code"] == 100
    assert error["fbtrace_id"]
    assert "dana" not in error["message"]  # never echoes what it was sent
    assert vendor.members[audience_id] == set()


def test_a_bad_token_is_a_permanent_error_in_meta_words(vendor, meta_destination, monkeypatch):
    point_connection_at(monkeypatch, meta_destination, vendor.base_url, token="not-the-token")
    refused = MetaCustomAudiencesConnector(meta_destination)

    with pytest.raises(PermanentError, match="Invalid OAuth access token"):
        refused.open_audience(AUDIENCE)

    answer = users_request(vendor, "1", {"schema": ["EMAIL"], "data": [[GOOD_HASH]]}, SESSION,
                           token="not-the-token")  # fmt: skip
    assert answer.json()["error"]["code"] == 190


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_is_retryable_and_the_batch_lands_once(
    vendor, meta_destination, connector, kind
):
    audience_id = connector.open_audience(AUDIENCE)
    batch = batch_of(meta_destination, audience_id, "add", members())

    result = delivered_after_a_fault(vendor, connector, batch, kind, "/users$")

    assert result.accepted == len(PEOPLE)
    assert vendor.members[audience_id] == meta_hashes(PEOPLE)
    # Applied once even where the first attempt was applied and its answer lost.
    assert set(vendor.applied_adds.values()) == {1}


def test_meta_throttling_codes_are_retryable(vendor, meta_destination, connector):
    audience_id = connector.open_audience(AUDIENCE)
    vendor.throttle_next(1)
    batch = batch_of(meta_destination, audience_id, "add", members())

    with pytest.raises(RetryableError, match="80003"):
        connector.send(batch)
    result, _ = deliver(connector, batch)

    assert result.accepted == len(PEOPLE)


def test_refused_rows_are_mapped_back_to_their_profiles(vendor, meta_destination, connector):
    audience_id = connector.open_audience(AUDIENCE)
    vendor.inject(Fault("partial", share=0.5, path_pattern="/users$"))

    result = connector.send(batch_of(meta_destination, audience_id, "add", members()))

    # The stand-in refuses the first half of the rows, in the order they were sent.
    refused_people, held_people = PEOPLE[:3], PEOPLE[3:]
    assert set(result.rejected) == {pid for pid, _, _ in refused_people}
    assert result.accepted == len(held_people)
    assert vendor.members[audience_id] == meta_hashes(held_people)

    # Next run sends the refused members again; each person then arrives exactly once.
    retried = [m for m in members() if m.profile_id in result.rejected]
    connector.send(batch_of(meta_destination, audience_id, "add", retried, run_key="run-2"))
    assert vendor.members[audience_id] == meta_hashes(PEOPLE)
    assert set(vendor.applied_adds.values()) == {1}


def test_unattributable_refusals_send_the_whole_batch_again(vendor, meta_destination, connector):
    vendor.invalid_sample_limit = 1
    audience_id = connector.open_audience(AUDIENCE)
    vendor.inject(Fault("partial", share=0.5, path_pattern="/users$"))

    result = connector.send(batch_of(meta_destination, audience_id, "add", members()))

    assert result.accepted == 0
    assert set(result.rejected) == {pid for pid, _, _ in PEOPLE}


def test_a_removal_below_the_minimum_size_is_refused(meta_destination, monkeypatch):
    vendor = MetaCustomAudiencesStandIn(min_audience_size_for_removal=5)
    point_connection_at(monkeypatch, meta_destination, vendor.start())
    connector = MetaCustomAudiencesConnector(meta_destination)
    try:
        audience_id = connector.open_audience(AUDIENCE)
        connector.send(batch_of(meta_destination, audience_id, "add", members(), 1, 2))

        with pytest.raises(RemovalRefused, match="below its minimum of 5"):
            connector.send(
                batch_of(meta_destination, audience_id, "remove", members(PEOPLE[:2]), 2, 2)
            )
        assert vendor.members[audience_id] == meta_hashes(PEOPLE)

        # One removal still leaves five: that one is taken.
        connector.send(
            batch_of(meta_destination, audience_id, "remove", members(PEOPLE[:1]), 1, 1, "run-2")
        )
        assert vendor.members[audience_id] == meta_hashes(PEOPLE[1:])
    finally:
        connector.close()
        vendor.stop()
