"""Destination files are checked whole, with messages that name the file, key and fix."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from cdp.activation.destinations import DestinationConfigError, load_all, parse_file

GOOD = """
    name: crm_drop
    type: file_export
    marketing_action: email
    identity: email_sha256
    audiences: [engaged_browsers]
    location: /tmp/somewhere
"""


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_shipped_destination_files_are_valid():
    destinations = load_all()
    assert destinations, "the project ships at least one destination"
    for destination in destinations.values():
        assert destination.consent_column.startswith("has_")


def test_a_good_file_parses_with_defaults(tmp_path):
    destination = parse_file(write(tmp_path, "crm_drop", GOOD))
    assert destination.export_mode == "additions_and_removals"
    assert destination.runs_after_each_build
    assert destination.consent_column == "has_email_consent"


@pytest.mark.parametrize(
    ("change", "expected_message"),
    [
        pytest.param({"marketing_action": "telepathy"}, "marketing_action 'telepathy'",
                     id="an unknown marketing action is named"),
        pytest.param({"identity": "email"}, "identity 'email' is not one of",
                     id="an identity the platform cannot send is named"),
        pytest.param({"schedule": "every tuesday"}, "schedule 'every tuesday'",
                     id="a schedule that is not cron is named"),
        pytest.param({"audiences": "engaged_browsers"}, "audiences must be a non-empty list",
                     id="audiences must be a list"),
        pytest.param({"colour": "blue"}, "key 'colour' is not a destination setting",
                     id="an unknown key is named"),
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


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "wrong_name", "name: crm_drop\ntype: carrier_pigeon\n")
    with pytest.raises(DestinationConfigError) as raised:
        parse_file(path)
    message = str(raised.value)
    for expected in ("'marketing_action' is missing", "'location' is missing",
                     "type 'carrier_pigeon'", "rename the file crm_drop.yml"):  # fmt: skip
        assert expected in message
