"""The Google Customer Match connector against the strict Data Manager stand-in, on localhost."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from cdp.activation.connectors.base import Member, PermanentError, RetryableError
from cdp.activation.connectors.google_customer_match import GoogleCustomerMatchConnector
from cdp.vendors.google_customer_match import GoogleDataManagerStandIn
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
    send_like_the_runner,
    sha256_hex,
)

ACCOUNT = "1234567890"
USER_LIST = "8800123"


def google_hashes(people) -> set[str]:
    """What Google must hold: SHA-256 of the lower-cased email and of E.164 with its '+'."""
    expected = set()
    for _pid, email, phone in people:
        if email:
            expected.add(sha256_hex(normalised_email(email)))
        if phone:
            expected.add(sha256_hex(e164(phone)))
    return expected


@pytest.fixture
def vendor():
    stand_in = GoogleDataManagerStandIn(user_lists={USER_LIST: ACCOUNT})
    stand_in.base_url = stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def google_destination(vendor, monkeypatch):
    target = destination(
        "google_customer_match",
        ("email_sha256", "phone_sha256"),
        {"operating_account_id": "123-456-7890", "user_lists": {AUDIENCE.audience_id: USER_LIST}},
        timeout_seconds=0.3,
    )
    point_connection_at(monkeypatch, target, vendor.base_url)
    return target


@pytest.fixture
def connector(google_destination):
    opened = GoogleCustomerMatchConnector(google_destination)
    yield opened
    opened.close()


def test_open_audience_answers_the_mapped_user_list(connector):
    assert connector.open_audience(AUDIENCE) == USER_LIST


def test_an_unmapped_audience_names_the_key_to_add(google_destination, connector):
    google_destination.settings["user_lists"] = {}
    unmapped = GoogleCustomerMatchConnector(google_destination)

    with pytest.raises(PermanentError, match=r"settings\.user_lists\.lapsed_buyers"):
        unmapped.open_audience(AUDIENCE)


def test_adds_then_removes_hold_exactly_the_hashes_google_expects(
    vendor, google_destination, connector
):
    user_list = connector.open_audience(AUDIENCE)

    added = connector.send(batch_of(google_destination, user_list, "add", members(), 1, 2))

    assert added.accepted == len(PEOPLE)
    assert added.rejected == {}
    assert vendor.members[user_list] == google_hashes(PEOPLE)
    assert set(vendor.applied_adds.values()) == {1}
    assert added.vendor_response["request_ids"][0]

    leaving, staying = PEOPLE[:2], PEOPLE[2:]
    removed = connector.send(
        batch_of(google_destination, user_list, "remove", members(leaving), 2, 2)
    )

    assert removed.accepted == len(leaving)
    assert vendor.members[user_list] == google_hashes(staying)


def test_a_member_with_an_unhashed_value_is_rejected_and_the_rest_land(
    vendor, google_destination, connector
):
    user_list = connector.open_audience(AUDIENCE)
    broken = Member("p-999", {"email_sha256": ["not-hashed@example.com"]})

    result = connector.send(batch_of(google_destination, user_list, "add", (*members(), broken)))

    assert set(result.rejected) == {"p-999"}
    assert "INVALID_HEX_ENCODING" in result.rejected["p-999"]
    assert "example.com" not in result.rejected["p-999"]
    assert result.accepted == len(PEOPLE)
    assert vendor.members[user_list] == google_hashes(PEOPLE)


# -- strictness, spoken to directly -----------------------------------------------------

GOOD_HASH = sha256_hex("dana.m@example.com")


def ingest_body(**changes) -> dict:
    body = {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
                "productDestinationId": USER_LIST,
            }
        ],
        "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": GOOD_HASH}]}}],
        "encoding": "HEX",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
        "validateOnly": False,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def members_with(*identifiers) -> list[dict]:
    return [{"userData": {"userIdentifiers": list(identifiers)}}]


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        (ingest_body(audienceMembers=members_with({"emailAddress": "dana.m@example.com"})),
         "INVALID_HEX_ENCODING", "audienceMembers[0].userData.userIdentifiers[0].emailAddress"),
        (ingest_body(audienceMembers=members_with({"phoneNumber": GOOD_HASH[:40]})),
         "INVALID_SHA256_FORMAT", "audienceMembers[0].userData.userIdentifiers[0].phoneNumber"),
        (ingest_body(audienceMembers=members_with({"emailAddress": GOOD_HASH}) * 10_001),
         "TOO_MANY_AUDIENCE_MEMBERS", "audienceMembers"),
        (ingest_body(audienceMembers=None), "REQUIRED_FIELD_MISSING", "audienceMembers"),
        (ingest_body(encoding=None), "REQUIRED_FIELD_MISSING", "encoding"),
        (ingest_body(destinations=[{"productDestinationId": USER_LIST}]),
         "REQUIRED_FIELD_MISSING", "destinations[0].operatingAccount"),
        (ingest_body(termsOfService=None), "TERMS_AND_CONDITIONS_NOT_SIGNED",
         "termsOfService.customerMatchTermsOfServiceStatus"),
        (ingest_body(destinations=[{
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
            "productDestinationId": "999"}]),
         "INVALID_USER_LIST_ID", "destinations[0].productDestinationId"),
    ],
    ids=["unhashed", "short-hash", "10001-members", "no-members", "no-encoding",
         "no-operating-account", "terms-not-accepted", "unknown-user-list"],
)  # fmt: skip
def test_the_stand_in_refuses_what_google_refuses(vendor, body, reason, field):
    answer = httpx.post(
        f"{vendor.base_url}/v1/audienceMembers:ingest",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["code"] == 400
    info, bad_request = error["details"]
    assert info["reason"] == reason
    assert field in [violation["field"] for violation in bad_request["fieldViolations"]]
    assert "dana" not in answer.text  # never echoes what it was sent
    assert not vendor.members


def test_a_bad_token_is_a_permanent_error_in_google_words(vendor, google_destination, monkeypatch):
    point_connection_at(monkeypatch, google_destination, vendor.base_url, token="expired-token")
    refused = GoogleCustomerMatchConnector(google_destination)

    with pytest.raises(PermanentError, match="invalid authentication credentials"):
        refused.send(batch_of(google_destination, USER_LIST, "add", members()))
    assert not vendor.members


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", retry_after_seconds=0.4),
        Fault("server_error"),
        Fault("slow", delay_seconds=0.8),
        Fault("drop_before"),
        Fault("drop_after"),
    ],
    ids=lambda fault: fault.kind,
)
def test_each_fault_is_retryable_and_the_batch_lands_once(
    vendor, google_destination, connector, fault
):
    user_list = connector.open_audience(AUDIENCE)
    vendor.inject(fault)
    batch = batch_of(google_destination, user_list, "add", members())

    with pytest.raises(RetryableError) as raised:
        connector.send(batch)
    if fault.kind == "rate_limit":
        assert raised.value.retry_after == pytest.approx(0.4)

    result, errors = send_like_the_runner(connector, batch)

    assert errors == []
    assert result.accepted == len(PEOPLE)
    assert vendor.members[user_list] == google_hashes(PEOPLE)
    # Applied once even where the first attempt was applied and its answer lost.
    assert set(vendor.applied_adds.values()) == {1}


def test_refused_members_are_mapped_to_profiles_and_the_rest_sent_again(
    vendor, google_destination, connector
):
    user_list = connector.open_audience(AUDIENCE)
    vendor.inject(Fault("partial", share=0.5))

    result = connector.send(batch_of(google_destination, user_list, "add", members()))

    # The stand-in names the first half of the members, in the order they were sent.
    refused_people, held_people = PEOPLE[:3], PEOPLE[3:]
    assert set(result.rejected) == {pid for pid, _, _ in refused_people}
    assert all("INVALID_AUDIENCE_MEMBER" in reason for reason in result.rejected.values())
    assert result.accepted == len(held_people)
    assert vendor.members[user_list] == google_hashes(held_people)

    # Next run sends the refused members again; each then arrives exactly once.
    retried = [m for m in members() if m.profile_id in result.rejected]
    connector.send(batch_of(google_destination, user_list, "add", retried, run_key="run-2"))
    assert vendor.members[user_list] == google_hashes(PEOPLE)
    assert set(vendor.applied_adds.values()) == {1}


def test_a_request_level_refusal_is_permanent_with_the_field_named(
    vendor, google_destination, monkeypatch
):
    google_destination.settings["operating_account_id"] = "555-000-1111"
    wrong_account = GoogleCustomerMatchConnector(google_destination)

    with pytest.raises(PermanentError, match=r"destinations\[0\]\.productDestinationId"):
        wrong_account.send(batch_of(google_destination, USER_LIST, "add", members()))
    assert not vendor.members


# -- OAuth 2.0: access tokens from a refresh token --------------------------------------


@pytest.fixture
def oauth_google(google_destination, monkeypatch):
    """A stand-in whose tokens live `lifetime` seconds, reached with a refresh token."""
    started = []

    def start(lifetime: float = 3599, **connection_changes):
        vendor = GoogleDataManagerStandIn(
            user_lists={USER_LIST: ACCOUNT}, token_lifetime_seconds=lifetime
        )
        vendor.base_url = vendor.start()
        connection = vendor.oauth_connection(vendor.base_url)
        connection["extra"].update(connection_changes)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{google_destination.connection_id.upper()}", json.dumps(connection)
        )
        started.append(vendor)
        return vendor, GoogleCustomerMatchConnector(google_destination)

    yield start
    for vendor in started:
        vendor.stop()


def thirds(people=PEOPLE) -> list[tuple]:
    return [members(people[start : start + 2]) for start in range(0, len(people), 2)]


def assert_no_secrets(text: str, vendor: GoogleDataManagerStandIn) -> None:
    for secret in (vendor.client_secret, vendor.refresh_token, *vendor.access_tokens):
        assert secret not in text


def test_one_token_serves_the_run_while_it_is_valid(google_destination, oauth_google):
    vendor, connector = oauth_google()

    for number, part in enumerate(thirds(), start=1):
        connector.send(batch_of(google_destination, USER_LIST, "add", part, number, 3))

    assert vendor.tokens_issued == 1
    assert vendor.tokens_refused == 0
    assert vendor.members[USER_LIST] == google_hashes(PEOPLE)


def test_a_token_about_to_lapse_is_renewed_before_it_is_sent(google_destination, oauth_google):
    vendor, connector = oauth_google(lifetime=1)

    connector.send(batch_of(google_destination, USER_LIST, "add", members(PEOPLE[:3]), 1, 2))
    time.sleep(1.0)  # the token's last tenth of its life: renewed before the next request
    connector.send(batch_of(google_destination, USER_LIST, "add", members(PEOPLE[3:]), 2, 2))

    assert vendor.tokens_issued == 2
    assert vendor.tokens_refused == 0, "a lapsed token was sent"
    assert vendor.members[USER_LIST] == google_hashes(PEOPLE)


def test_a_token_expired_mid_run_is_renewed_and_nothing_lost_or_doubled(
    google_destination, oauth_google, caplog
):
    vendor, connector = oauth_google()
    parts = thirds()

    with caplog.at_level(logging.DEBUG):
        connector.send(batch_of(google_destination, USER_LIST, "add", parts[0], 1, 3))
        vendor.expire_tokens()  # Google let it lapse (or revoked it) earlier than promised
        for number, part in enumerate(parts[1:], start=2):
            result, errors = send_like_the_runner(
                connector, batch_of(google_destination, USER_LIST, "add", part, number, 3)
            )
            assert (result.accepted, errors) == (len(part), [])
        connector.close()

    # Batch two was refused once for its token, then sent again with a new one, once.
    assert vendor.tokens_refused == 1
    assert vendor.tokens_issued == 2
    assert vendor.requests_received["ingest"] == 3
    assert vendor.members[USER_LIST] == google_hashes(PEOPLE)
    assert set(vendor.applied_adds.values()) == {1}
    assert "access token refused" in caplog.text
    assert_no_secrets(caplog.text, vendor)


def test_a_token_refused_twice_fails_at_once_in_google_words(google_destination, oauth_google):
    vendor, connector = oauth_google(lifetime=0)  # every token lapses as it is issued

    with pytest.raises(PermanentError) as stopped:
        connector.send(batch_of(google_destination, USER_LIST, "add", members()))

    assert "Request had invalid authentication credentials" in str(stopped.value)
    assert "newly obtained token was refused too" in str(stopped.value)
    assert (vendor.tokens_issued, vendor.tokens_refused) == (2, 2)
    assert not vendor.members
    assert_no_secrets(str(stopped.value), vendor)


@pytest.mark.parametrize(
    ("credentials", "google_says", "fix"),
    [
        pytest.param({"refresh_token": "1//revoked"}, "invalid_grant: Token has been expired "
                     "or revoked.", "authorise again", id="revoked-refresh-token"),
        pytest.param({"client_secret": "not-the-secret"}, "invalid_client: The OAuth client "
                     "was not found.", "client_id and client_secret", id="wrong-client-secret"),
    ],
)  # fmt: skip
def test_refused_credentials_fail_at_once_with_google_message(
    google_destination, oauth_google, caplog, credentials, google_says, fix
):
    vendor, connector = oauth_google(**credentials)

    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as stopped:
        connector.send(batch_of(google_destination, USER_LIST, "add", members()))

    message = str(stopped.value)
    assert google_says in message and fix in message
    assert repr(google_destination.connection_id) in message
    assert vendor.tokens_issued == 0
    assert not vendor.requests_received, "no API request without a token"
    for secret in (*credentials.values(), vendor.client_secret, vendor.refresh_token):
        assert secret not in message and secret not in caplog.text


def test_a_failing_token_endpoint_is_retried_like_the_api(google_destination, oauth_google):
    vendor, connector = oauth_google()
    vendor.inject(Fault("server_error", path_pattern="^/token$"))
    batch = batch_of(google_destination, USER_LIST, "add", members())

    result, errors = send_like_the_runner(connector, batch)

    [error] = errors
    assert isinstance(error, RetryableError)
    assert "token endpoint" in str(error) and "answered 500" in str(error)
    assert result.accepted == len(PEOPLE)
    assert vendor.members[USER_LIST] == google_hashes(PEOPLE)
    assert vendor.tokens_issued == 1


@pytest.mark.parametrize(
    ("connection", "named"),
    [
        pytest.param({"password": "ya29.static", "extra": {"client_id": "c", "client_secret": "s",
                      "refresh_token": "r"}}, "both a password", id="token-and-refresh-token"),
        pytest.param({"extra": {"client_id": "c", "refresh_token": "r"}},
                     "the extra lacks client_secret", id="no-client-secret"),
        pytest.param({"extra": {}}, "holds no Google credentials", id="no-credentials"),
    ],
)  # fmt: skip
def test_a_connection_without_usable_credentials_says_what_to_set(
    vendor, google_destination, monkeypatch, connection, named
):
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{google_destination.connection_id.upper()}",
        json.dumps({"conn_type": "http", "host": vendor.base_url, **connection}),
    )

    with pytest.raises(PermanentError, match=named) as refused:
        GoogleCustomerMatchConnector(google_destination)
    assert repr(google_destination.connection_id) in str(refused.value)


def test_the_stand_in_refuses_an_expired_token_as_google_does(oauth_google):
    vendor, _connector = oauth_google()
    token_uri = f"{vendor.base_url}/token"
    grant = {
        "grant_type": "refresh_token",
        "client_id": vendor.client_id,
        "client_secret": vendor.client_secret,
        "refresh_token": vendor.refresh_token,
    }

    issued = httpx.post(token_uri, data=grant).json()
    vendor.expire_tokens()
    answer = httpx.post(
        f"{vendor.base_url}/v1/audienceMembers:ingest",
        json=ingest_body(),
        headers={"Authorization": f"Bearer {issued['access_token']}"},
    )

    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 3599)
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert (error["status"], error["details"][0]["reason"]) == (
        "UNAUTHENTICATED", "ACCESS_TOKEN_EXPIRED",
    )  # fmt: skip
    assert not vendor.members
    refused = httpx.post(token_uri, data={**grant, "refresh_token": "1//other"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
