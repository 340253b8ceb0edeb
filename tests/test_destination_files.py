"""Destination files are checked whole, with messages that name the file, key and fix.

This includes the data-usage policy: a labelled attribute mapped to a marketing action
its label forbids is refused here, before any DAG exists to send it.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from cdp.activation import catalog
from cdp.activation.destinations import DestinationConfigError, load_all, parse_file

GOOD = """
    name: crm_drop
    type: file_export
    marketing_action: email
    identities: [email_sha256]
    audiences: [engaged_browsers]
    location: /tmp/somewhere
"""


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_destination_files_are_valid_and_their_exposures_current():
    destinations, problems = catalog.check_all()
    assert problems == []
    assert destinations == load_all()
    types = {destination.type for destination in destinations.values()}
    assert types == {
        "file_export", "email_provider", "sms_provider", "meta_custom_audiences",
        "google_customer_match", "audience_sharing",
    }  # fmt: skip


def test_a_good_file_parses_with_defaults(tmp_path):
    destination = parse_file(write(tmp_path, "crm_drop", GOOD))
    assert destination.export_mode == "additions_and_removals"
    assert destination.runs_after_each_build
    assert destination.consent_column == "has_email_consent"
    assert destination.identity_match == "first_available"


@pytest.mark.parametrize(
    ("change", "expected_message"),
    [
        pytest.param({"marketing_action": "telepathy"}, "marketing_action 'telepathy'",
                     id="an unknown marketing action is named"),
        pytest.param({"identities": ["fax_number"]}, "'fax_number' is not accepted by file_export",
                     id="an identity the platform cannot send is named"),
        pytest.param({"schedule": "every tuesday"}, "schedule 'every tuesday'",
                     id="a schedule that is not cron is named"),
        pytest.param({"audiences": "engaged_browsers"}, "audiences must be a non-empty list",
                     id="audiences must be a list"),
        pytest.param({"colour": "blue"}, "key 'colour' is not a destination setting",
                     id="an unknown key is named"),
        pytest.param({"attributes": {"FAVOURITE": "favourite_colour"}},
                     "attributes.FAVOURITE: 'favourite_colour' is not a profile attribute",
                     id="an unknown attribute is named"),
        pytest.param({"location": "s3://bucket/prefix"}, "connection_id is required for s3",
                     id="S3 needs a connection for its credentials"),
        pytest.param({"max_rows_per_file": 0}, "batch_size 0 must be a whole number from 1",
                     id="a row limit must be positive"),
    ],
)  # fmt: skip
def test_a_bad_value_is_reported_with_file_and_fix(tmp_path, change, expected_message):
    document = yaml.safe_load(textwrap.dedent(GOOD))
    document.update(change)
    path = tmp_path / "crm_drop.yml"
    path.write_text(yaml.safe_dump(document))

    with pytest.raises(DestinationConfigError) as raised:
        parse_file(path)
    assert str(path) in str(raised.value)
    assert expected_message in str(raised.value)


@pytest.mark.parametrize(
    ("document", "expected_message"),
    [
        pytest.param(
            {"type": "meta_custom_audiences", "marketing_action": "advertising",
             "identities": ["email"], "connection_id": "meta", "settings": {"ad_account_id": "1"}},
            "'email' is not accepted by meta_custom_audiences; use one or more of email_sha256",
            id="Meta takes hashes, never a raw email"),
        pytest.param(
            {"type": "meta_custom_audiences", "marketing_action": "advertising",
             "identities": ["email_sha256"], "connection_id": "meta", "batch_size": 10_001,
             "settings": {"ad_account_id": "1"}},
            "batch_size 10001 must be a whole number from 1 to 10,000",
            id="a batch over the vendor's limit is refused"),
        pytest.param(
            {"type": "sms_provider", "marketing_action": "email", "identities": ["phone_e164"],
             "connection_id": "sms"},
            "marketing_action 'email' is not one a sms_provider destination serves",
            id="an SMS destination serves the sms action"),
        pytest.param(
            {"type": "sms_provider", "marketing_action": "sms", "identities": ["phone_e164"],
             "connection_id": "sms", "attributes": {"first_name": "first_name"}},
            "attributes: a sms_provider destination takes identities only; remove them",
            id="an SMS subscription carries no attributes"),
        pytest.param(
            {"type": "sms_provider", "marketing_action": "sms", "identities": ["phone_e164"],
             "connection_id": "sms", "settings": {"lists": {"lapsed_buyers": "Y6nRLr"}}},
            "settings.lists.lapsed_buyers: not one of this destination's audiences",
            id="an SMS list for an audience the file does not send"),
        pytest.param(
            {"type": "sms_provider", "marketing_action": "sms", "identities": ["phone_e164"],
             "connection_id": "sms", "settings": {"lists": {"engaged_browsers": "VIP list"}}},
            "settings.lists.engaged_browsers: 'VIP list' is not a list id",
            id="an SMS list named by its name, not its id"),
        pytest.param(
            {"type": "sms_provider", "marketing_action": "sms", "identities": ["phone_e164"],
             "connection_id": "sms", "settings": {"lists": ["Y6nRLr"]}},
            "settings.lists must map audience ids to list ids",
            id="SMS lists are a mapping by audience"),
        pytest.param(
            {"type": "email_provider", "marketing_action": "email", "identities": ["email"]},
            "connection_id is missing",
            id="an API destination needs a connection"),
        pytest.param(
            {"type": "google_customer_match", "marketing_action": "advertising",
             "identities": ["email_sha256"], "connection_id": "google"},
            "settings.user_lists is required",
            id="Customer Match needs its user lists"),
    ],
)  # fmt: skip
def test_what_a_destination_type_cannot_take_is_refused(tmp_path, document, expected_message):
    path = tmp_path / "ads.yml"
    path.write_text(yaml.safe_dump({"name": "ads", "audiences": ["engaged_browsers"], **document}))
    with pytest.raises(DestinationConfigError) as raised:
        parse_file(path)
    assert str(path) in str(raised.value)
    assert expected_message in str(raised.value)


def test_an_sms_list_named_for_one_of_the_audiences_is_taken(tmp_path):
    path = write(tmp_path, "texts", """
        name: texts
        type: sms_provider
        connection_id: sms
        marketing_action: sms
        identities: [phone_e164]
        audiences: [engaged_browsers, hot_shoppers_today]
        settings:
          lists: {engaged_browsers: Y6nRLr}
    """)  # fmt: skip
    assert parse_file(path).settings == {"lists": {"engaged_browsers": "Y6nRLr"}}


@pytest.mark.parametrize(
    ("action", "attribute", "label"),
    [("advertising", "birth_date", "sensitive"), ("advertising", "postal_code", "no_advertising"),
     ("audience_sharing", "birth_date", "sensitive")],
)  # fmt: skip
def test_a_labelled_attribute_mapped_to_a_forbidden_action_is_refused(
    tmp_path, action, attribute, label
):
    document = yaml.safe_load(textwrap.dedent(GOOD))
    document.update(
        type="file_export" if action == "advertising" else "audience_sharing",
        marketing_action=action,
        attributes={"FIELD": attribute},
    )
    if action == "audience_sharing":
        document.update(connection_id="manager")
        document.pop("location")
    path = tmp_path / "crm_drop.yml"
    path.write_text(yaml.safe_dump(document))

    with pytest.raises(DestinationConfigError) as raised:
        parse_file(path)
    message = str(raised.value)
    assert f"attributes.FIELD maps {attribute!r}, labelled {label!r}" in message
    assert f"for marketing action {action!r}" in message
    assert "_crm__sources.yml" in message, "the message names where the label is declared"


def test_the_same_labelled_attribute_is_allowed_where_the_policy_permits(tmp_path):
    document = yaml.safe_load(textwrap.dedent(GOOD))
    document.update(attributes={"BIRTHDAY": "birth_date", "POSTCODE": "postal_code"})
    path = tmp_path / "crm_drop.yml"
    path.write_text(yaml.safe_dump(document))
    assert parse_file(path).attributes == {"BIRTHDAY": "birth_date", "POSTCODE": "postal_code"}


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "wrong_name", "name: crm_drop\ntype: carrier_pigeon\n")
    with pytest.raises(DestinationConfigError) as raised:
        parse_file(path)
    message = str(raised.value)
    for expected in ("'marketing_action' is missing", "'identities' is missing",
                     "type 'carrier_pigeon'", "rename the file crm_drop.yml"):  # fmt: skip
        assert expected in message


def test_check_reports_every_file_and_audiences_the_project_does_not_define(tmp_path):
    write(tmp_path, "crm_drop", GOOD.replace("[engaged_browsers]", "[no_such_audience]"))
    write(tmp_path, "broken", "name: broken\n")
    _, problems = catalog.check_all(tmp_path)
    text = "\n".join(problems)
    assert "'no_such_audience' is not defined" in text
    assert "broken.yml" in text and "'type' is missing" in text
